// Command producer streams a customer CSV into RabbitMQ: one persistent,
// broker-confirmed message per valid row, rejected rows to a report, and a
// checkpoint so that --resume continues after a crash.
package main

import (
	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/cli"
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() { cli.Main("producer", run) }
