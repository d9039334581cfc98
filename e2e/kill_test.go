package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/process"
)

// writeFile writes n rows id,name,email: every 40th email is a duplicate
// of an earlier one in another case, every 97th is invalid. It returns the
// number of distinct valid emails.
func writeFile(t *testing.T, path string, n int) int {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "id,name,email")
	emails := map[int]bool{}
	for i := 1; i <= n; i++ {
		switch {
		case i%97 == 0:
			fmt.Fprintf(w, "%d,Broken %d,broken-%d-at-example.com\n", i, i, i)
		case i%40 == 0:
			emails[i-1] = true
			fmt.Fprintf(w, "%d,Again %d,  PERSON%d@Example.COM \n", i, i, i-1)
		default:
			emails[i] = true
			fmt.Fprintf(w, "%d,Person %d,person%d@example.com\n", i, i, i)
		}
	}
	distinct := len(emails)
	require.NoError(t, w.Flush())
	require.NoError(t, f.Close())
	return distinct
}

func kill(t *testing.T, p *process.Process) {
	t.Helper()
	require.True(t, p.Kill(), "%s exited before it could be killed: %v", p.Name(), p.Err())
}

// TestKilledProducerAndConsumersLoseNothing SIGKILLs the producer mid-file
// and resumes it, and SIGKILLs consumers mid-run and starts new ones, with
// a CRM failing a share of calls: every customer ends in Postgres once and
// was created in the CRM once.
func TestKilledProducerAndConsumersLoseNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "customers.csv")
	const rows = 20000
	distinct := writeFile(t, file, rows)
	p := newPipeline(t, "--fail-rate", "0.1", "--fail-after-create-rate", "0.05", "--latency", "1ms")
	p.env = append(p.env, "CONSUMER_LEASE=3s", "CRM_TIMEOUT=2s", "CONSUMER_PREFETCH=64")
	c1 := p.consumer(t, "c1")
	c2 := p.consumer(t, "c2")

	checkpoint := filepath.Join(dir, "checkpoint")
	// One channel and a small window slow the producer enough to be
	// killed mid-file.
	args := []string{
		"--file", file, "--parallel", "1", "--window", "8", "--checkpoint", checkpoint,
		"--rejects", filepath.Join(dir, "rejects.csv"), "--checkpoint-every", "20ms",
	}
	producer := start(t, "producer", p.env, args...)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(checkpoint)
		if err != nil {
			return false
		}
		var cp struct {
			Row      int64 `json:"row"`
			Complete bool  `json:"complete"`
		}
		return json.Unmarshal(b, &cp) == nil && cp.Row > 1000 && !cp.Complete
	}, time.Minute, 5*time.Millisecond, "the producer made no progress")
	kill(t, producer)
	resumeArgs := append(slices.Clone(args), "--resume")
	resumeArgs[3], resumeArgs[5] = "2", "256" // full speed now

	// A consumer dies mid-run; a new one takes its place.
	kill(t, c1)
	p.consumer(t, "c3")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "producer"), resumeArgs...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.Output()
	require.NoError(t, err)
	var s summary
	require.NoError(t, json.Unmarshal(out, &s))
	require.True(t, s.Complete)
	require.Less(t, s.Rows, int64(rows), "the resumed run starts past the checkpoint")

	time.Sleep(200 * time.Millisecond)
	kill(t, c2)
	p.consumer(t, "c4")

	p.waitSynced(t, int64(distinct), 3*time.Minute)
	st := p.crmStats(t)
	require.Equal(t, distinct, st.Created, "CRM creations")
	require.Empty(t, st.Duplicates, "customers created more than once")
	require.Zero(t, st.Conflicts)
}
