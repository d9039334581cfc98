// Package buildinfo answers --version for the three binaries. A release build
// stamps the version with -ldflags "-X main.version=v1.2.3"; a plain
// `go build` or `go install` is described by what the Go toolchain recorded
// (module version, VCS revision), so that a binary found on a host can still
// be traced back to its source.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Dev is the version of a binary that nobody stamped.
const Dev = "dev"

// Version returns stamped when a build set it (anything but "" or Dev), else
// the module version the toolchain recorded, else the VCS revision (short,
// "+dirty" when the tree had changes), else Dev.
func Version(stamped string) string {
	if stamped != "" && stamped != Dev {
		return stamped
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Dev
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return Dev
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := Dev + "-" + rev
	if dirty {
		v += "+dirty"
	}
	return v
}

// String is the one line --version prints: the command, its version and the
// Go release that built it.
func String(command, stamped string) string {
	return strings.Join([]string{command, Version(stamped), runtime.Version()}, " ")
}
