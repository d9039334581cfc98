// Command consumer takes customers off RabbitMQ, stores each once in
// PostgreSQL and creates each once in the CRM. Run as many as you like, on
// any hosts. `consumer migrate` applies the database migrations.
package main

import (
	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/cli"
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() { cli.Main("consumer", run) }
