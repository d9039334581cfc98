// Command web serves the import pipeline to people and programs: a page to
// upload a CSV, follow its import live, browse the customers and replay dead
// letters, and the same as a JSON API with server-sent events. `web watch`
// follows an import from a terminal. Run with --help for its flags.
package main

import (
	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/cli"
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() { cli.Main("web", run) }
