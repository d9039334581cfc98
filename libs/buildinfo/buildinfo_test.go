package buildinfo

import (
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-11-30T10:40:00Z"},
		{Key: "vcs.modified", Value: "false"},
	}
	dirty := slices.Concat(vcs[:3], []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}})
	for _, tc := range []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"no build info", Dev, nil, "producer dev " + runtime.Version()},
		{"nothing recorded", Dev, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, "producer dev go1.26.0"},
		{"go install of a tag", Dev, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.4.0"}}, "producer v1.4.0 go1.26.0"},
		{
			"go build of a clean clone", Dev, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			"producer dev (revision 0123456789ab, 2026-11-30T10:40:00Z) go1.26.0",
		},
		{
			"go build of a changed tree", Dev, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: dirty},
			"producer dev (revision 0123456789ab+dirty, 2026-11-30T10:40:00Z) go1.26.0",
		},
		{
			"release build", "v2.0.0", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			"producer v2.0.0 (revision 0123456789ab, 2026-11-30T10:40:00Z) go1.26.0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, fromBuildInfo(tc.stamped, tc.info).String("producer"))
		})
	}
}

func TestStampedVersionWins(t *testing.T) {
	t.Parallel()
	require.Equal(t, "v2.0.0", Version("v2.0.0"))
	require.True(t, strings.HasPrefix(String("producer", "v2.0.0"), "producer v2.0.0 "))
	require.NotEmpty(t, Version(Dev))
}

func TestCollectorSaysWhatVersionSays(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector("v2.0.0"))
	i := Read("v2.0.0")
	want := `# HELP custimport_build_info The binary's version, VCS revision and commit time, whether its tree had changes, and its Go release; always 1.
# TYPE custimport_build_info gauge
custimport_build_info{dirty="` + map[bool]string{true: "true", false: "false"}[i.Modified] + `",goversion="` + i.GoVersion + `",revision="` + i.Revision + `",vcs_time="` + i.Time + `",version="v2.0.0"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), MetricName))
}
