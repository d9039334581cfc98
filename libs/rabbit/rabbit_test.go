package rabbit_test

import (
	"io"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

type testBundle struct {
	top  rabbit.Topology
	conn *amqp.Connection
	pub  *rabbit.Publisher
}

func setup(t *testing.T) testBundle {
	t.Helper()
	top := testenv.Topology(t)
	conn, pub := testenv.Publisher(t, top)
	return testBundle{top: top, conn: conn, pub: pub}
}

func get(t *testing.T, conn *amqp.Connection, queue string, within time.Duration) amqp.Delivery {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	var d amqp.Delivery
	require.Eventually(t, func() bool {
		var ok bool
		d, ok, err = ch.Get(queue, true)
		require.NoError(t, err)
		return ok
	}, within, 20*time.Millisecond, "no message in %s", queue)
	return d
}

func TestDeclareIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.top.Declare(b.pub.Channel()))
	for _, q := range b.top.Queues() {
		_, err := b.pub.Channel().QueueDeclarePassive(q, true, false, false, false, nil)
		require.NoError(t, err, q)
	}
}

func TestPublishConfirmedReachesWorkQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.pub.PublishAll(t.Context(), []rabbit.Message{{
		Exchange: b.top.Exchange(), Key: rabbit.ImportKey,
		Publishing: amqp.Publishing{MessageId: "m1", Body: []byte(`{"email":"a@b.com"}`), DeliveryMode: amqp.Persistent},
	}})
	require.NoError(t, err)
	d := get(t, b.conn, b.top.Queue(), 5*time.Second)
	require.Equal(t, "m1", d.MessageId)
}

func TestUnroutableIsReturned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.pub.PublishAll(t.Context(), []rabbit.Message{{
		Exchange: b.top.Exchange(), Key: "nowhere",
		Publishing: amqp.Publishing{MessageId: "lost"},
	}})
	require.ErrorIs(t, err, rabbit.ErrReturned)
}

func TestRetryQueueReturnsMessageAfterDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range b.top.RetryDelays {
		err := b.pub.PublishAll(t.Context(), []rabbit.Message{{
			Exchange: "", Key: b.top.RetryQueue(i),
			Publishing: amqp.Publishing{MessageId: "r", Body: []byte("x"), DeliveryMode: amqp.Persistent},
		}})
		require.NoError(t, err)
		d := get(t, b.conn, b.top.Queue(), 10*time.Second)
		require.Equal(t, "r", d.MessageId)
	}
}

func TestDeliveryLimitDeadLetters(t *testing.T) {
	t.Parallel()
	top := testenv.Topology(t)
	top.DeliveryLimit = 1
	conn, pub := testenv.Publisher(t, top)
	require.NoError(t, pub.PublishAll(t.Context(), []rabbit.Message{{
		Exchange: top.Exchange(), Key: rabbit.ImportKey,
		Publishing: amqp.Publishing{MessageId: "poison", DeliveryMode: amqp.Persistent},
	}}))
	// A consumer that dies on the message every time: each death hands it
	// back; past the limit the broker dead-letters it.
	for range top.DeliveryLimit + 1 {
		ch, err := conn.Channel()
		require.NoError(t, err)
		var ok bool
		require.Eventually(t, func() bool {
			_, ok, err = ch.Get(top.Queue(), false)
			require.NoError(t, err)
			return ok
		}, 5*time.Second, 20*time.Millisecond)
		require.NoError(t, ch.Close()) // unacked: requeued
	}
	d := get(t, conn, top.DeadQueue(), 10*time.Second)
	require.Equal(t, "poison", d.MessageId)
}

func TestRetryQueueNamesTheDelayAsWritten(t *testing.T) {
	top := rabbit.Topology{Prefix: "p", RetryDelays: []time.Duration{
		500 * time.Millisecond, time.Second, 10 * time.Second, time.Minute, 10 * time.Minute,
		90 * time.Second, time.Hour, 90 * time.Minute, time.Hour + time.Second,
	}}
	want := []string{"500ms", "1s", "10s", "1m", "10m", "1m30s", "1h", "1h30m", "1h0m1s"}
	for i, w := range want {
		require.Equal(t, "p.retry."+w, top.RetryQueue(i), "delay %s", top.RetryDelays[i])
	}
}

// A harness's environment for a topology reads back, through the flags, as
// that topology.
func TestTopologyEnvRoundTripsThroughTheFlags(t *testing.T) {
	want := rabbit.Topology{Prefix: "p", RetryDelays: []time.Duration{100 * time.Millisecond, 90 * time.Second}, DeliveryLimit: 7}
	env := map[string]string{}
	for _, kv := range want.Env() {
		k, v, ok := strings.Cut(kv, "=")
		require.True(t, ok, kv)
		env[k] = v
	}
	var got rabbit.Topology
	s := envflag.New("test", "", func(k string) string { return env[k] }, io.Discard)
	rabbit.BindTopologyFlags(s, &got.Prefix, &got.RetryDelays, &got.DeliveryLimit)
	require.NoError(t, s.Parse(nil))
	require.Equal(t, want, got)

	// Unset, the defaults of WithDefaults.
	var def rabbit.Topology
	s = envflag.New("test", "", func(string) string { return "" }, io.Discard)
	rabbit.BindTopologyFlags(s, &def.Prefix, &def.RetryDelays, &def.DeliveryLimit)
	require.NoError(t, s.Parse([]string{"--delivery-limit", "3"}))
	require.Equal(t, rabbit.Topology{DeliveryLimit: 3}.WithDefaults(), def)
}
