// Package buildinfo says what a binary is, for --version and for the
// custimport_build_info metric: its version, the VCS revision and commit
// time it was built from and whether the tree had changes, and the Go
// release. A release build stamps the version with -ldflags
// "-X main.version=v1.2.3"; a plain `go build` from a clone or a `go
// install` is described by what the Go toolchain recorded, so that a binary
// found on a host can still be traced back to its source.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Dev is the version of a binary that nobody stamped, built outside a
// module version.
const Dev = "dev"

// Info is what the toolchain and the release build recorded.
type Info struct {
	// Version is the stamped version, else the module version (go install
	// of a tag), else Dev.
	Version string
	// Revision is the VCS commit, Time its commit time (RFC 3339), and
	// Modified whether the tree had uncommitted changes; empty and false
	// when the build recorded no VCS information (go run, go test, a
	// source tree without .git, -buildvcs=false).
	Revision string
	Time     string
	Modified bool
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// Read returns the running binary's Info; stamped is the binary's own
// version variable (Dev unless a release build set it).
func Read(stamped string) Info {
	info, _ := debug.ReadBuildInfo()
	return fromBuildInfo(stamped, info)
}

func fromBuildInfo(stamped string, bi *debug.BuildInfo) Info {
	i := Info{Version: Dev, GoVersion: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				i.Time = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
	}
	if stamped != "" && stamped != Dev {
		i.Version = stamped
	}
	return i
}

// String is the one line --version prints, for example
// "producer v1.2.0 (revision 0123456789ab+dirty, 2026-11-30T10:40:00Z) go1.26.0";
// the parenthesis is left out when no VCS information was recorded.
func (i Info) String(command string) string {
	parts := []string{command, i.Version}
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if i.Modified {
			rev += "+dirty"
		}
		vcs := "(revision " + rev
		if i.Time != "" {
			vcs += ", " + i.Time
		}
		parts = append(parts, vcs+")")
	}
	parts = append(parts, i.GoVersion)
	return strings.Join(parts, " ")
}

// String is Read(stamped).String(command).
func String(command, stamped string) string { return Read(stamped).String(command) }

// Version returns the binary's version (see Info.Version).
func Version(stamped string) string { return Read(stamped).Version }

// MetricName is the gauge Collector exports.
const MetricName = "custimport_build_info"

// Collector returns the gauge custimport_build_info, always 1, whose labels
// say what --version says: version, revision, vcs_time, dirty and
// goversion. A binary that serves metrics registers it once:
//
//	reg.MustRegister(buildinfo.Collector(version))
func Collector(stamped string) prometheus.Collector {
	i := Read(stamped)
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        MetricName,
		Help:        "The binary's version, VCS revision and commit time, whether its tree had changes, and its Go release; always 1.",
		ConstLabels: i.labels(),
	})
	g.Set(1)
	return g
}

func (i Info) labels() prometheus.Labels {
	return prometheus.Labels{
		"version":   i.Version,
		"revision":  i.Revision,
		"vcs_time":  i.Time,
		"dirty":     strconv.FormatBool(i.Modified),
		"goversion": i.GoVersion,
	}
}
