package tcpproxy_test

import (
	"bufio"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/tcpproxy"
)

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					_, _ = c.Write(append(s.Bytes(), '\n'))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) error {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := r.ReadString('\n')
	return err
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func TestCutDownUp(t *testing.T) {
	t.Parallel()
	p, err := tcpproxy.Start(t.Context(), echoServer(t))
	require.NoError(t, err)
	defer p.Close()

	c, r := dial(t, p.Addr())
	require.NoError(t, roundTrip(t, c, r))

	p.Cut()
	require.Error(t, roundTrip(t, c, r), "a cut connection must fail")

	c, r = dial(t, p.Addr())
	require.NoError(t, roundTrip(t, c, r), "new connections work after a cut")

	p.Down()
	require.Error(t, roundTrip(t, c, r))
	c, r = dial(t, p.Addr()) // accepted by the kernel, closed by the proxy
	require.Error(t, roundTrip(t, c, r))

	p.Up()
	c, r = dial(t, p.Addr())
	require.NoError(t, roundTrip(t, c, r))
}
