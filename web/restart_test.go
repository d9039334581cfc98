package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

func TestWatchFollowsAnImportAcrossAServiceRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.upload(t, seed(t, "mock_data_1000_header.csv"), "")

	var out, errs testenv.Buffer
	done := make(chan error, 1)
	env := map[string]string{"WEB_API_TOKEN": testToken}
	go func() {
		done <- run(context.WithoutCancel(t.Context()), []string{"watch", "--url", b.base, "--reconnect-max", "300ms", id},
			func(k string) string { return env[k] }, &out, &errs)
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), id) }, time.Minute, 20*time.Millisecond, "watch printed nothing")

	b.stop() // no consumer yet: the import waits for its customers
	require.Eventually(t, func() bool {
		return strings.Contains(errs.String(), "connection to the web service lost; reconnecting")
	},
		time.Minute, 20*time.Millisecond, "watch did not say the connection was lost:\n%s", errs.String())
	b.start(t)
	b.consumer(t)

	select {
	case err := <-done:
		require.NoError(t, err, "stderr:\n%s", errs.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("watch did not end; stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	}
	require.Contains(t, errs.String(), "reconnected; going on from the last event")
	require.Contains(t, out.String(), "import "+id+" (mock_data_1000_header.csv) done: 1002 rows, 1002 published, 0 invalid; 1002 customers stored first by it: 1002 synced, 0 rejected by the CRM, 0 failed")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Greater(t, len(lines), 2, "one line per change")
}

func TestAnImportStoppedByARestartResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	// One channel with a small window: slow enough to be stopped half-way.
	b := setup(t, withEnv("WEB_IMPORT_PARALLEL", "1"), withEnv("WEB_IMPORT_WINDOW", "1"))
	const rows = 4000
	file := filepath.Join(t.TempDir(), "many.csv")
	var csv bytes.Buffer
	csv.WriteString("email,name\n")
	for i := range rows {
		fmt.Fprintf(&csv, "person%05d@example.com,Person %d\n", i, i)
	}
	require.NoError(t, os.WriteFile(file, csv.Bytes(), 0o600))
	id := b.upload(t, file, "")

	var imp importRow
	require.Eventually(t, func() bool {
		b.getJSON(t, "/api/v1/imports/"+id, &imp)
		return imp.Published > 0
	}, time.Minute, 10*time.Millisecond)
	b.stop()
	b.importFromPostgres(t, id, &imp)
	require.Equal(t, statePublishing, imp.State, "stopped half-way, the import waits for a restart")
	require.Less(t, imp.Published, int64(rows), "the import was meant to be stopped half-way")

	b.start(t)
	require.Eventually(t, func() bool {
		b.getJSON(t, "/api/v1/imports/"+id, &imp)
		return imp.State != statePublishing
	}, 3*time.Minute, 50*time.Millisecond)
	require.Equal(t, stateDone, imp.State, imp.Error)
	require.Contains(t, b.logs.String(), "taking over an interrupted import")
	require.Equal(t, int64(rows), imp.Rows)
	require.Equal(t, int64(rows), imp.Published+imp.Rejected)

	// Every row is in the queue; those between the checkpoint and the stop
	// may be there twice.
	conn, err := rabbit.Dial(t.Context(), testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclarePassive(b.top.Queue(), true, false, false, false, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, q.Messages, rows)
}

// importFromPostgres reads an import straight from Postgres, for when the service is
// stopped.
func (b *testBundle) importFromPostgres(t *testing.T, id string, imp *importRow) {
	t.Helper()
	st := &store{pool: b.pool}
	got, err := st.getImport(t.Context(), id)
	require.NoError(t, err)
	*imp = got
}

// heapInUse is the bytes of live and not yet swept heap objects.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Not parallel: it measures the process's heap, and runs alone.
func TestABigUploadKeepsTheHeapFlat(t *testing.T) {
	b := setup(t, withEnv("WEB_MAX_UPLOAD", "1GiB"))
	const size = 300 << 20

	// Rows generated on the fly, as a stream of unknown length.
	var chunk bytes.Buffer
	for i := 0; chunk.Len() < 1<<20; i++ {
		fmt.Fprintf(&chunk, "customer%07d@example.com,Customer %d,+1 555 %07d\n", i, i, i)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := io.WriteString(pw, "email,name,phone\n")
		for sent := 0; err == nil && sent < size; sent += chunk.Len() {
			_, err = pw.Write(chunk.Bytes())
		}
		_ = pw.CloseWithError(err)
	}()

	runtime.GC()
	base := heapInUse()
	var peak uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, heapInUse())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	r := b.do(t, http.MethodPost, "/api/v1/imports?name=big.csv", testToken, "text/csv", pr)
	close(stop)
	sampler.Wait()
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))

	var imps struct{ Imports []importRow }
	b.getJSON(t, "/api/v1/imports", &imps)
	require.Len(t, imps.Imports, 1)
	uploaded := imps.Imports[0].Size
	require.Greater(t, uploaded, int64(size))
	growth := int64(peak) - int64(base)
	t.Logf("uploaded %d MiB; heap in use %d MiB before, at most %d MiB during the upload (growth %d MiB)",
		uploaded>>20, base>>20, peak>>20, growth>>20)
	require.Less(t, growth, int64(64<<20), "the upload must stream, not be held in memory")
}
