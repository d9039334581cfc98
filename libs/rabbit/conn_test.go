package rabbit_test

import (
	"errors"
	"net"
	"net/url"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

// withURL returns the test broker's URL changed by edit.
func withURL(t *testing.T, edit func(u *url.URL)) string {
	t.Helper()
	return testenv.EditURL(t, testenv.AMQPURL(t), edit)
}

// closedPort returns the URL of a local port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "amqp://guest:guest@" + addr + "/"
}

func TestDialPermanentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, says string
	}{
		{"bad password", withURL(t, func(u *url.URL) { u.User = url.UserPassword("guest", "s3cret-wrong") }), "user name or password"},
		{"unknown user", withURL(t, func(u *url.URL) { u.User = url.UserPassword("nobody-"+testenv.Name(t), "s3cret-wrong") }), "user name or password"},
		{"missing vhost", withURL(t, func(u *url.URL) { u.Path = "/no-such-vhost-" + testenv.Name(t) }), "virtual host does not exist"},
		{"malformed", "http://guest:s3cret-wrong@127.0.0.1:5672/", "AMQP scheme"},
		{"empty entry", testenv.AMQPURL(t) + ",", "entry 2 of the AMQP URL list is empty"},
		{"empty", " ", "AMQP URL is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := rabbit.Dial(t.Context(), tt.url, t.Name())
			require.Error(t, err)
			require.True(t, rabbit.IsPermanent(err), "not permanent: %v", err)
			require.ErrorContains(t, err, tt.says)
			require.NotContains(t, err.Error(), "is RabbitMQ running")
			require.NotContains(t, err.Error(), "s3cret-wrong")
		})
	}
}

func TestDialUnreachableIsNotPermanent(t *testing.T) {
	t.Parallel()
	_, err := rabbit.Dial(t.Context(), closedPort(t), t.Name())
	require.Error(t, err)
	require.False(t, rabbit.IsPermanent(err), "permanent: %v", err)
	require.ErrorContains(t, err, "is RabbitMQ running")
}

func TestDialerGoesRoundTheList(t *testing.T) {
	t.Parallel()
	down, up := closedPort(t), testenv.AMQPURL(t)
	d, err := rabbit.NewDialer(down+","+up, t.Name())
	require.NoError(t, err)
	for range 3 {
		conn, got, err := d.Dial(t.Context())
		require.NoError(t, err)
		require.Equal(t, up, got)
		require.NoError(t, conn.Close())
	}
}

// A node that refuses a connection mid-handshake looks like bad credentials
// to the client; another node that answers still wins.
func TestDialerPrefersAnAnswerToARefusal(t *testing.T) {
	t.Parallel()
	refused := withURL(t, func(u *url.URL) { u.User = url.UserPassword("guest", "wrong") })
	conn, err := rabbit.Dial(t.Context(), refused+","+testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	require.NoError(t, conn.Close())
}

func TestRedactHidesEveryPassword(t *testing.T) {
	t.Parallel()
	got := rabbit.Redact("amqp://u:pw1@h1:5681/,amqp://u:pw2@h2:5682/v")
	require.Equal(t, "amqp://u:xxxxx@h1:5681/,amqp://u:xxxxx@h2:5682/v", got)
	require.NotContains(t, rabbit.Redact("amqp://u:pw1@h1:5681/,:%zz"), "pw1")
}

func TestReplicasFollowsTheList(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, rabbit.Replicas("amqp://h1/"))
	require.Equal(t, 3, rabbit.Replicas("amqp://h1/, amqp://h2/,amqp://h3/"))
	require.Equal(t, 0, rabbit.Replicas("amqp://h1/,"))
}

// The group size is part of the declaration: a client that disagrees is
// refused, so every client of a cluster must be given the same list.
func TestReplicasAreDeclared(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := b.top
	other.Replicas = 3
	ch, err := b.conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	err = other.Declare(ch)
	amqpErr, ok := errors.AsType[*amqp.Error](err)
	require.True(t, ok, "%v", err)
	require.Equal(t, amqp.PreconditionFailed, amqpErr.Code)
	require.ErrorContains(t, err, "x-quorum-initial-group-size")
}
