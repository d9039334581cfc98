// Package e2e runs the real binaries together: the producer on real sample
// exports, consumers, and mockcrm, against real PostgreSQL and RabbitMQ, and
// checks that every customer lands in Postgres once and in the CRM once.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds producer, consumer and mockcrm once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// Shared by every test of the run, so not t.TempDir(); TestMain
		// removes it.
		binDir, buildErr = os.MkdirTemp("", "custimport-e2e-bin") //nolint:usetesting // outlives the test that builds it
		if buildErr != nil {
			return
		}
		buildErr = process.Build(t.Context(), binDir, "./producer", "./consumer", "./mockcrm")
	})
	require.NoError(t, buildErr)
	return binDir
}

func TestMain(m *testing.M) {
	m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := process.FreeAddr(t.Context())
	require.NoError(t, err)
	return addr
}

// start runs one of the binaries, its output kept for the test log, and
// stops it gracefully when the test ends: an exit other than 0 after
// SIGTERM, or none within the grace period, fails the test.
func start(t *testing.T, name string, env []string, args ...string) *process.Process {
	t.Helper()
	p, _ := startProgram(t, name, filepath.Join(binaries(t), name), env, args...)
	return p
}

// startProgram is start for any program, named name in the test log; it
// also returns what the program writes.
func startProgram(t *testing.T, name, path string, env []string, args ...string) (*process.Process, *testenv.Buffer) {
	t.Helper()
	out := &testenv.Buffer{}
	// Not t.Context(): it ends before the cleanups, and the processes must
	// be stopped gracefully by them.
	p, err := process.Start(context.WithoutCancel(t.Context()), process.Spec{
		Name: name, Bin: path, Args: args, Env: env, Output: out,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, tail(out.String(), 4000))
		}
	})
	return p, out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// pipeline is one isolated deployment: its own schema, queues and CRM.
type pipeline struct {
	env    []string
	crmURL string
	db     pgstore.Config
	top    rabbit.Topology
}

func newPipeline(t *testing.T, crmFlags ...string) *pipeline {
	t.Helper()
	top := testenv.Topology(t, 100*time.Millisecond, 300*time.Millisecond, time.Second)
	return newPipelineOn(t, testenv.AMQPURL(t), top, crmFlags...)
}

// newPipelineOn is newPipeline on the brokers of amqpURL (a list: the nodes
// of a cluster) with the given topology.
func newPipelineOn(t *testing.T, amqpURL string, top rabbit.Topology, crmFlags ...string) *pipeline {
	t.Helper()
	db := testenv.MigratedPostgres(t)
	addr := freeAddr(t)
	crm := start(t, "mockcrm", nil, append([]string{"--addr", addr}, crmFlags...)...)
	crmURL := "http://" + addr
	require.NoError(t, process.WaitHTTP(t.Context(), crm, crmURL+"/healthz", 20*time.Second))
	return &pipeline{
		env: append(top.Env(),
			"AMQP_URL="+amqpURL,
			"DATABASE_URL="+testenv.DatabaseURLWithSchema(t, db),
			"CRM_URL="+crmURL,
			"CONSUMER_MAX_ATTEMPTS=30",
			"CONSUMER_LEASE=20s",
			"CRM_TIMEOUT=5s",
			"LOG_FORMAT=json",
			"CONSUMER_HTTP_ADDR=127.0.0.1:0", // several consumers, one port each
		),
		crmURL: crmURL, db: db, top: top,
	}
}

func (p *pipeline) consumer(t *testing.T, name string) *process.Process {
	t.Helper()
	return start(t, "consumer", append(p.env, "CONSUMER_NAME="+name))
}

// summary is the producer's stdout.
type summary struct {
	Rows      int64  `json:"rows"`
	Published int64  `json:"published"`
	Rejected  int64  `json:"rejected"`
	Complete  bool   `json:"complete"`
	Error     string `json:"error"`
}

func (p *pipeline) produce(t *testing.T, file string, args ...string) summary {
	t.Helper()
	dir := t.TempDir()
	all := append([]string{
		"--file", file, "--parallel", "2",
		"--rejects", filepath.Join(dir, "rejects.csv"), "--checkpoint", filepath.Join(dir, "checkpoint"),
	}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "producer"), all...)
	cmd.Env = append(os.Environ(), p.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "producer: %s", stderr.String())
	var s summary
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &s), "stdout: %s", stdout.String())
	return s
}

func (p *pipeline) crmStats(t *testing.T) crmmock.Stats {
	t.Helper()
	resp, err := http.Get(p.crmURL + "/stats") //nolint:noctx // test
	require.NoError(t, err)
	defer resp.Body.Close()
	var st crmmock.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

func (p *pipeline) counts(t *testing.T) map[string]int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testenv.DatabaseURLWithSchema(t, p.db))
	require.NoError(t, err)
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT crm_state, count(*) FROM customers GROUP BY 1`)
	require.NoError(t, err)
	got := map[string]int64{}
	var st string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error { got[st] = n; return nil })
	require.NoError(t, err)
	return got
}

// waitSynced waits until want customers are synced and none is pending.
func (p *pipeline) waitSynced(t *testing.T, want int64, within time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := p.counts(t)
		assert.Equal(c, want, got["synced"], "synced (all: %v)", got)
		assert.Zero(c, got["pending"], "pending (all: %v)", got)
	}, within, 200*time.Millisecond)
}

func seed(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(testenv.SeedsDir(t), name)
	_, err := os.Stat(path)
	require.NoError(t, err, "seed file")
	abs, err := filepath.Abs(path)
	require.NoError(t, err)
	return abs
}

// TestSeedImports imports each real sample export with two consumers and a
// CRM failing 10% of requests and, inside the batches, 10% of customers, and
// checks the counts its README gives.
func TestSeedImports(t *testing.T) {
	cases := []struct {
		file     string
		args     []string
		rows     int64
		rejected int64
		distinct int64
	}{
		{"mock_data_1000_header.csv", nil, 1002, 0, 1002},
		{"mock_bad_data_noheader.csv", []string{"--columns", "id,first_name,last_name,email,phone"}, 5, 1, 3},
		{"name_email_example_noheader.csv", []string{"--columns", "name,email"}, 7, 0, 6},
		{"name_email_10000_noheader.csv", nil, 10000, 0, 10000},
		{"name_email_11273_dups_noheader.csv", []string{"--columns", "name,email"}, 11273, 0, 11000},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			file := seed(t, tc.file)
			p := newPipeline(t, "--fail-rate", "0.1", "--customer-fail-rate", "0.1", "--fail-after-create-rate", "0.05", "--latency", "1ms")
			p.consumer(t, "c1")
			p.consumer(t, "c2")
			s := p.produce(t, file, tc.args...)
			require.True(t, s.Complete, s.Error)
			require.Equal(t, tc.rows, s.Rows)
			require.Equal(t, tc.rejected, s.Rejected)
			require.Equal(t, tc.rows-tc.rejected, s.Published)

			p.waitSynced(t, tc.distinct, 3*time.Minute)
			st := p.crmStats(t)
			require.Equal(t, int(tc.distinct), st.Created, "CRM creations")
			require.Equal(t, int(tc.distinct), st.Customers)
			require.Empty(t, st.Duplicates, "customers created more than once")
			require.Zero(t, st.Conflicts, "creations tried under a second key")
			// 10% of 1,000 customers cannot all succeed but by a fluke of
			// 1e-45; requests, a batch of up to 100 customers each, can.
			if tc.distinct >= 1000 {
				require.Positive(t, st.Failed, "the CRM was meant to fail some customers")
			}
		})
	}
}
