package main

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/tcpproxy"
	"github.com/custimport/custimport/libs/testenv"
)

// What retrying cannot cure ends the consumer at once, with a connect
// timeout of an hour, after one dial, saying what is wrong.
func TestConsumerFailsAtOnceOnWhatRetryingCannotCure(t *testing.T) {
	t.Parallel()
	db := testenv.DatabaseURLWithSchema(t, testenv.MigratedPostgres(t))
	tests := []struct {
		name      string
		database  string
		amqp      func(proxy string) string
		permanent func(error) bool
		says      string
	}{
		{name: "missing database", database: testenv.EditURL(t, db, func(u *url.URL) { u.Path = "/no_such_db_" + testenv.Name(t) }), permanent: pgstore.IsPermanent, says: "does not exist"},
		{name: "malformed database URL", database: "postgres://u:s3cret-wrong@127.0.0.1:notaport/db", permanent: pgstore.IsPermanent, says: "malformed database URL"},
		{name: "RabbitMQ refuses the password", amqp: func(proxy string) string {
			return testenv.EditURL(t, testenv.AMQPURL(t), func(u *url.URL) { u.Host, u.User = proxy, url.UserPassword("guest", "s3cret-wrong") })
		}, permanent: rabbit.IsPermanent, says: "user name or password"},
		{name: "missing vhost", amqp: func(proxy string) string {
			return testenv.EditURL(t, testenv.AMQPURL(t), func(u *url.URL) { u.Host, u.Path = proxy, "/no-such-vhost" })
		}, permanent: rabbit.IsPermanent, says: "virtual host does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(testenv.AMQPURL(t))
			require.NoError(t, err)
			proxy, err := tcpproxy.Start(t.Context(), u.Host)
			require.NoError(t, err)
			t.Cleanup(func() { _ = proxy.Close() })
			env := map[string]string{
				"DATABASE_URL": db, "AMQP_URL": testenv.AMQPURL(t),
				"CONSUMER_CONNECT_TIMEOUT": "1h", "CONSUMER_HTTP_ADDR": "off",
				"QUEUE_PREFIX": testenv.Topology(t).Prefix, "RETRY_DELAYS": "50ms,200ms",
			}
			if tt.database != "" {
				env["DATABASE_URL"] = tt.database
			}
			if tt.amqp != nil {
				env["AMQP_URL"] = tt.amqp(proxy.Addr())
			}
			// A guard far below the hour: before the fix the consumer
			// retried until it, and said nothing permanent.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			err = run(ctx, nil, func(k string) string { return env[k] }, &testenv.Buffer{}, &testenv.Buffer{})
			require.Error(t, err)
			require.True(t, tt.permanent(err), "not permanent: %v", err)
			require.ErrorContains(t, err, tt.says)
			require.NotContains(t, err.Error(), "is RabbitMQ running")
			require.NotContains(t, err.Error(), "s3cret-wrong")
			if tt.amqp != nil {
				require.Equal(t, 1, proxy.Accepted(), "dialled once")
			}
		})
	}
}

// The connect timeout is a deadline for the dial too: a broker that accepts
// connections and never answers costs the timeout, not the handshake's
// own 15 s.
func TestConnectTimeoutIsADeadline(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	env := map[string]string{
		"DATABASE_URL":             testenv.DatabaseURLWithSchema(t, testenv.MigratedPostgres(t)),
		"AMQP_URL":                 "amqp://guest:guest@" + ln.Addr().String() + "/",
		"CONSUMER_CONNECT_TIMEOUT": "2s", "CONSUMER_HTTP_ADDR": "off",
	}
	// Before the fix the dial held on for its 15 s and the run ended at
	// this guard, without the connect timeout's error.
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Second)
	defer cancel()
	err = run(ctx, nil, func(k string) string { return env[k] }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "gave up after --connect-timeout 2s")
	require.NoError(t, ctx.Err(), "returned before the guard")
}
