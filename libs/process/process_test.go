package process_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/testenv"
)

// The test binary doubles as the child process: PROCESS_TEST_CHILD says
// how it behaves. Its exit status is what the tests read, hence os.Exit.
//
//nolint:forbidigo // a child process's exit status
func TestMain(m *testing.M) {
	switch os.Getenv("PROCESS_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "graceful": // says it runs, exits 0 on SIGTERM
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "running")
		<-sig
		fmt.Fprintln(os.Stderr, "stopping")
		os.Exit(0)
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "running")
		select {}
	case "summary": // a result on stdout, a log line on stderr
		fmt.Fprintln(os.Stdout, `{"rows":3}`)
		fmt.Fprintln(os.Stderr, "log line")
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "something broke")
		os.Exit(3)
	}
}

func spec(t *testing.T, behaviour string) process.Spec {
	t.Helper()
	return process.Spec{
		Name: behaviour,
		Bin:  os.Args[0],
		Env:  []string{"PROCESS_TEST_CHILD=" + behaviour},
		Log:  filepath.Join(t.TempDir(), behaviour+".log"),
	}
}

// waitLog waits until the child has written want to its log: it has
// installed its signal handling by then.
func waitLog(t *testing.T, p *process.Process, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(process.Tail(p.Log(), 1000), want) },
		30*time.Second, 10*time.Millisecond, "the child never wrote %q", want)
}

func TestStopIsGracefulAndLogged(t *testing.T) {
	t.Parallel()
	p, err := process.Start(t.Context(), spec(t, "graceful"))
	require.NoError(t, err)
	waitLog(t, p, "running")
	require.NoError(t, p.Stop())
	require.True(t, p.ExitedCleanly())
	require.False(t, p.KilledOnPurpose())
	log := process.Tail(p.Log(), 10000)
	require.Contains(t, log, "=== start graceful")
	require.Contains(t, log, "stopping")
	require.Contains(t, log, "=== graceful exited")
	require.NoError(t, p.Stop(), "stopping an exited process")
	require.Positive(t, p.Usage().CPU+float64(p.Usage().PeakRSS))
}

func TestStopKillsAfterTheGracePeriod(t *testing.T) {
	t.Parallel()
	s := spec(t, "stubborn")
	s.StopGrace = 100 * time.Millisecond
	p, err := process.Start(t.Context(), s)
	require.NoError(t, err)
	waitLog(t, p, "running")
	require.ErrorIs(t, p.Stop(), process.ErrNotStopped)
	require.False(t, p.ExitedCleanly())
}

func TestEndOfContextStopsGracefully(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	p, err := process.Start(ctx, spec(t, "graceful"))
	require.NoError(t, err)
	waitLog(t, p, "running")
	cancel()
	<-p.Done()
	require.True(t, p.ExitedCleanly(), "SIGTERM, not SIGKILL: %v", p.Err())
}

func TestKillIsOnPurpose(t *testing.T) {
	t.Parallel()
	p, err := process.Start(t.Context(), spec(t, "stubborn"))
	require.NoError(t, err)
	require.True(t, p.Kill())
	require.True(t, p.KilledOnPurpose())
	require.False(t, p.ExitedCleanly())
	require.False(t, p.Kill(), "already gone")
}

func TestWaitReportsTheExitWithTheLogsEnd(t *testing.T) {
	t.Parallel()
	p, err := process.Start(t.Context(), spec(t, "fail"))
	require.NoError(t, err)
	err = p.Wait(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "something broke")
	require.Contains(t, err.Error(), p.Log())
}

func TestCaptureStdoutKeepsTheSummaryApart(t *testing.T) {
	t.Parallel()
	s := spec(t, "summary")
	s.CaptureStdout = true
	p, err := process.Start(t.Context(), s)
	require.NoError(t, err)
	require.NoError(t, p.Wait(t.Context()))
	require.JSONEq(t, `{"rows":3}`, string(p.Stdout()))
	require.Contains(t, process.Tail(p.Log(), 1000), "log line")
	require.NotContains(t, process.Tail(p.Log(), 1000), "rows")
}

func TestOutputWithoutALogFile(t *testing.T) {
	t.Parallel()
	var out testenv.Buffer
	s := spec(t, "summary")
	s.Log, s.Output = "", &out
	p, err := process.Start(t.Context(), s)
	require.NoError(t, err)
	require.NoError(t, p.Wait(t.Context()))
	require.Contains(t, out.String(), `{"rows":3}`)
	require.Contains(t, out.String(), "log line")
}

func TestWaitHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	require.NoError(t, process.WaitHTTP(t.Context(), nil, srv.URL, 10*time.Second))

	// A process that exits is not waited for until the deadline.
	addr, err := process.FreeAddr(t.Context())
	require.NoError(t, err)
	p, err := process.Start(t.Context(), spec(t, "fail"))
	require.NoError(t, err)
	err = process.WaitHTTP(t.Context(), p, "http://"+addr+"/healthz", time.Hour)
	require.ErrorContains(t, err, "exited before")
	require.ErrorContains(t, err, "something broke")
}

func TestFreeAddrIsLoopback(t *testing.T) {
	t.Parallel()
	addr, err := process.FreeAddr(t.Context())
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.NotEqual(t, "0", port)
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", addr)
	require.NoError(t, err, "the port is free")
	require.NoError(t, l.Close())
}

func TestTail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, []byte("0123456789"), 0o600))
	require.Equal(t, "789", process.Tail(path, 3))
	require.Equal(t, "0123456789", process.Tail(path, 100))
	require.Empty(t, process.Tail(filepath.Join(t.TempDir(), "missing"), 3))
}
