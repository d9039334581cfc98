package e2e_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/tcpproxy"
	"github.com/custimport/custimport/libs/testenv"
)

// viaProxy returns a proxy to the broker of rawURL and the URL that goes
// through it.
func viaProxy(t *testing.T, rawURL string) (*tcpproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	p, err := tcpproxy.Start(t.Context(), u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// checkpointAt reads the producer's checkpoint: the row below which every
// row is confirmed, and whether the file is done.
func checkpointAt(path string) (row int64, complete bool) {
	b, err := os.ReadFile(path) //nolint:gosec // the test's own file
	if err != nil {
		return 0, false
	}
	var cp struct {
		Row      int64 `json:"row"`
		Complete bool  `json:"complete"`
	}
	if json.Unmarshal(b, &cp) != nil {
		return 0, false
	}
	return cp.Row, cp.Complete
}

// TestFailoverBetweenTwoNodes gives the producer and two consumers two
// nodes of a cluster, then takes the first away mid-import (every
// connection cut, new ones refused), brings it back and takes the second
// away: both sides move to the node that answers and back, the producer
// publishes every row once confirmed, and every customer ends in Postgres
// once and in the CRM once.
func TestFailoverBetweenTwoNodes(t *testing.T) {
	nodes := testenv.ClusterURLs(t)
	proxyA, urlA := viaProxy(t, nodes[0])
	proxyB, urlB := viaProxy(t, nodes[1])
	list := []string{urlA, urlB}
	top := testenv.ClusterTopology(t, list, 100*time.Millisecond, 300*time.Millisecond, time.Second)
	p := newPipelineOn(t, strings.Join(list, ","), top, "--fail-rate", "0.1", "--latency", "1ms")
	p.env = append(p.env, "CONSUMER_LEASE=5s", "CRM_TIMEOUT=2s", "CONSUMER_PREFETCH=64", "CONSUMER_RECONNECT_MAX=1s")
	var outs []*testenv.Buffer
	for _, name := range []string{"c1", "c2"} {
		_, out := startProgram(t, "consumer "+name, filepath.Join(binaries(t), "consumer"), append(p.env, "CONSUMER_NAME="+name))
		outs = append(outs, out)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "customers.csv")
	const rows = 10000
	distinct := writeFile(t, file, rows)
	checkpoint := filepath.Join(dir, "checkpoint")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	// One channel and a small window keep the import going while the
	// nodes come and go.
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "producer"),
		"--file", file, "--parallel", "1", "--window", "8", "--checkpoint", checkpoint,
		"--rejects", filepath.Join(dir, "rejects.csv"), "--checkpoint-every", "20ms", "--reconnect-timeout", "1m")
	cmd.Env = append(os.Environ(), p.env...)
	var stdout, stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	progressed := func(past int64) func() bool {
		return func() bool {
			row, complete := checkpointAt(checkpoint)
			return row > past || complete
		}
	}
	require.Eventually(t, progressed(1000), time.Minute, 5*time.Millisecond, "the producer made no progress")
	row, complete := checkpointAt(checkpoint)
	require.False(t, complete, "the import ended before the first node went away: make it longer")
	proxyA.Down()
	t.Logf("node A away at row %d", row)
	require.Eventually(t, progressed(row+1000), time.Minute, 5*time.Millisecond, "no progress on node B")
	row, _ = checkpointAt(checkpoint)
	proxyA.Up()
	proxyB.Down()
	t.Logf("node A back, node B away at row %d", row)

	select {
	case err := <-exited:
		require.NoError(t, err, "producer: %s", stderr.String())
	case <-ctx.Done():
		t.Fatalf("the producer did not finish: %s", tail(stderr.String(), 4000))
	}
	var s summary
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &s), "stdout: %s", stdout.String())
	require.True(t, s.Complete, s.Error)
	require.Equal(t, int64(rows), s.Rows)
	require.Equal(t, s.Rows-s.Rejected, s.Published, "every valid row published, each counted once")
	require.Contains(t, stderr.String(), "reconnected to RabbitMQ", "the producer moved to the other node")

	p.waitSynced(t, int64(distinct), 3*time.Minute)
	st := p.crmStats(t)
	require.Equal(t, distinct, st.Created, "CRM creations")
	require.Empty(t, st.Duplicates, "customers created more than once")
	for i, out := range outs {
		logs := out.String()
		require.Contains(t, logs, proxyA.Addr(), "consumer %d consumed from node A", i+1)
		require.Contains(t, logs, proxyB.Addr(), "consumer %d moved to node B", i+1)
	}
}
