package e2e_test

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/tcpproxy"
	"github.com/custimport/custimport/libs/testenv"
)

// hosts is a small network of its own: a hub namespace and one namespace
// per consumer host, each joined to the hub by a veth pair on a /24 of its
// own (10.213.i.0/24: the hub is .1, the host .2). Nothing is added to the
// machine's own network: the hub reaches the services on the machine's
// loopback through proxies whose listening sockets live in the hub and
// whose upstream connections are dialled from the test process.
type hosts struct {
	prefix string
	hub    string
	names  []string
}

// ipCmd runs ip(8) and returns its error with its output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput() //nolint:noctx // short administrative commands
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newHosts makes the hub and n host namespaces, or skips the test where
// namespaces cannot be made (no root, no ip, a container without the
// capability), or fails under CI=true.
func newHosts(t *testing.T, n int) *hosts {
	t.Helper()
	prefix := "cit" + testenv.Name(t)[len(testenv.Name(t))-8:]
	h := &hosts{prefix: prefix, hub: prefix + "-hub"}
	if err := ipCmd("netns", "add", h.hub); err != nil {
		msg := "network namespaces cannot be made here (needs root and ip netns): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		for _, ns := range append([]string{h.hub}, h.names...) {
			if err := ipCmd("netns", "del", ns); err != nil {
				t.Logf("remove namespace: %v", err)
			}
		}
	})
	require.NoError(t, ipCmd("-n", h.hub, "link", "set", "lo", "up"))
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-h%d", prefix, i)
		require.NoError(t, ipCmd("netns", "add", ns))
		h.names = append(h.names, ns)
		hubIf := fmt.Sprintf("h%d", i)
		for _, args := range [][]string{
			{"link", "add", hubIf, "netns", h.hub, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", h.hub, "addr", "add", fmt.Sprintf("10.213.%d.1/24", i), "dev", hubIf},
			{"-n", h.hub, "link", "set", hubIf, "up"},
			{"-n", ns, "addr", "add", fmt.Sprintf("10.213.%d.2/24", i), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			require.NoError(t, ipCmd(args...))
		}
	}
	return h
}

// hubAddr is the hub's address as host i (1-based) sees it.
func hubAddr(i int) string { return fmt.Sprintf("10.213.%d.1", i) }

// listenInHub opens a TCP listener on every address of the hub. The socket
// is made on a thread moved into the hub's namespace; that thread is never
// given back to the runtime (the goroutine ends locked, so it exits).
func (h *hosts) listenInHub(t *testing.T, port string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", h.hub))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns %s: %w", h.hub, err)}
			return
		}
		ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "0.0.0.0:"+port)
		done <- result{ln, err}
	}()
	r := <-done
	require.NoError(t, r.err)
	return r.ln
}

// serve makes the service at target (host:port on this machine) reachable
// from every host at the hub's address, same port.
func (h *hosts) serve(t *testing.T, target string) {
	t.Helper()
	_, port, err := net.SplitHostPort(target)
	require.NoError(t, err)
	p := tcpproxy.Serve(h.listenInHub(t, port), target)
	t.Cleanup(func() { _ = p.Close() })
}

// cut takes host i (1-based) off the network: its link to the hub goes
// down, so its packets vanish (no reset, as when a cable is pulled).
func (h *hosts) cut(t *testing.T, i int) {
	t.Helper()
	require.NoError(t, ipCmd("-n", h.hub, "link", "set", fmt.Sprintf("h%d", i), "down"))
}

// replaceHost returns rawURL with its host replaced, port kept.
func replaceHost(t *testing.T, rawURL, host string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	u.Host = net.JoinHostPort(host, u.Port())
	return u.String()
}

// leasedBy lists the pending customers whose lease a batch runner of the
// consumer named owner holds (runners lease as owner#i), and when the last
// of those leases ends.
func leasedBy(t *testing.T, p *pipeline, owner string) ([]string, time.Time) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testenv.DatabaseURLWithSchema(t, p.db))
	require.NoError(t, err)
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT email, crm_lease_until FROM customers
		WHERE crm_state = 'pending' AND split_part(crm_lease_owner, '#', 1) = $1 AND crm_lease_until > now()`, owner)
	require.NoError(t, err)
	var emails []string
	var last time.Time
	var email string
	var until time.Time
	_, err = pgx.ForEachRow(rows, []any{&email, &until}, func() error {
		emails = append(emails, email)
		if until.After(last) {
			last = until
		}
		return nil
	})
	require.NoError(t, err)
	return emails, last
}

// TestConsumerHostCutOffMidBatch runs two consumers on hosts of their own
// (network namespaces) against a slow CRM, takes the first host off the
// network while it holds leased customers in the middle of its CRM calls,
// and keeps it off: its leases expire, the broker hands its deliveries to
// the other consumer, which finishes every customer the lost host held;
// every customer is synced, and none was created in the CRM twice.
func TestConsumerHostCutOffMidBatch(t *testing.T) {
	h := newHosts(t, 2)
	p := newPipeline(t, "--fail-rate", "0.05", "--latency", "300ms")

	h.serve(t, hostOf(t, testenv.AMQPURL(t)))
	h.serve(t, hostOf(t, testenv.DatabaseURL(t)))
	h.serve(t, hostOf(t, p.crmURL))
	consumers := make([]*process.Process, 2)
	for i := range consumers {
		hub := hubAddr(i + 1)
		env := append(append([]string(nil), p.env...),
			"AMQP_URL="+replaceHost(t, testenv.AMQPURL(t), hub),
			"DATABASE_URL="+replaceHost(t, testenv.DatabaseURLWithSchema(t, p.db), hub),
			"CRM_URL="+replaceHost(t, p.crmURL, hub),
			fmt.Sprintf("CONSUMER_NAME=host%d", i+1),
			"CONSUMER_LEASE=6s", "CRM_TIMEOUT=3s", "CONSUMER_PREFETCH=64", "CONSUMER_BATCH_SIZE=32",
		)
		consumers[i], _ = startProgram(t, fmt.Sprintf("consumer on host%d", i+1), "ip", env,
			"netns", "exec", h.names[i], filepath.Join(binaries(t), "consumer"))
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "customers.csv")
	distinct := writeFile(t, file, 3000)
	s := p.produce(t, file)
	require.True(t, s.Complete, s.Error)

	// Cut host1 while it holds leases: it is then in the middle of a batch
	// (leased customers are being called).
	var held []string
	var leaseEnd time.Time
	require.Eventually(t, func() bool {
		held, leaseEnd = leasedBy(t, p, "host1")
		return len(held) > 0
	}, 2*time.Minute, 20*time.Millisecond, "host1 never held a lease")
	h.cut(t, 1)
	held, leaseEnd = leasedBy(t, p, "host1")
	t.Logf("host1 cut off holding %d leases, the last until %s", len(held), leaseEnd.Format(time.RFC3339Nano))

	p.waitSynced(t, int64(distinct), 4*time.Minute)
	st := p.crmStats(t)
	require.Equal(t, distinct, st.Created, "CRM creations")
	require.Empty(t, st.Duplicates, "customers created more than once")
	require.Zero(t, st.Conflicts)

	conn, err := pgx.Connect(t.Context(), testenv.DatabaseURLWithSchema(t, p.db))
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var synced int
	var pastLeases bool
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT count(*) FILTER (WHERE crm_state = 'synced'), now() > $2 FROM customers WHERE email = ANY($1)`,
		held, leaseEnd).Scan(&synced, &pastLeases))
	require.Equal(t, len(held), synced, "the customers host1 held are synced, by another consumer: host1 has no network")
	require.True(t, pastLeases, "host1's leases had expired")

	// host1 is still cut off: it cannot have settled anything since.
	require.False(t, consumers[0].Exited(), "host1's consumer exited: %v", consumers[0].Err())
	kill(t, consumers[0])
}

// hostOf returns host:port of a URL (default port by scheme).
func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	if u.Port() != "" {
		return u.Host
	}
	port := map[string]string{"amqp": "5672", "postgres": "5432", "postgresql": "5432", "http": "80"}[u.Scheme]
	return net.JoinHostPort(u.Hostname(), port)
}
