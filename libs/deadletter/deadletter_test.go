package deadletter_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/deadletter"
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

// dead puts messages in the dead-letter queue, as a consumer would: ids
// d0, d1... with the given reasons in turn.
func (b testBundle) dead(t *testing.T, reasons ...string) {
	t.Helper()
	msgs := make([]rabbit.Message, len(reasons))
	for i, r := range reasons {
		msgs[i] = rabbit.Message{Exchange: b.top.DeadExchange(), Key: rabbit.DeadKey, Publishing: amqp.Publishing{
			MessageId: fmt.Sprintf("d%d", i), DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{"x-death-reason": r, "x-last-error": "CRM said no", "x-row": int64(i + 1)},
			Body:    fmt.Appendf(nil, `{"email":"c%d@example.com"}`, i),
		}}
	}
	require.NoError(t, b.pub.PublishAll(t.Context(), msgs))
}

// drain takes every message of queue, in order.
func (b testBundle) drain(t *testing.T, queue string) []amqp.Delivery {
	t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		require.NoError(t, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func ids(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.MessageId
	}
	return out
}

type resetter struct {
	mu     sync.Mutex
	emails []string
}

func (r *resetter) Reset(_ context.Context, emails []string) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emails = append(r.emails, emails...)
	return int64(len(emails)), nil
}

func TestInspectCountsAndLeavesTheQueueAsItWas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.dead(t, "crm_rejected", "invalid_message", "crm_rejected", "crm_attempts_exhausted", "crm_rejected")

	rep, err := deadletter.Inspect(t.Context(), b.conn, b.top, deadletter.InspectOptions{Reason: "crm_rejected", Sample: 2})
	require.NoError(t, err)
	require.Equal(t, 5, rep.Total)
	require.Equal(t, 5, rep.Scanned)
	require.Equal(t, map[string]int{"crm_rejected": 3, "invalid_message": 1, "crm_attempts_exhausted": 1}, rep.ByReason)
	require.Len(t, rep.First, 2)
	require.Equal(t, "d0", rep.First[0].MessageID)
	require.Equal(t, "d2", rep.First[1].MessageID)
	require.Equal(t, "CRM said no", rep.First[0].Headers["x-last-error"])
	require.JSONEq(t, `{"email":"c0@example.com"}`, rep.First[0].Body)

	left := b.drain(t, b.top.DeadQueue())
	require.Equal(t, []string{"d0", "d1", "d2", "d3", "d4"}, ids(left), "every message is back, in its order")
	require.Equal(t, "crm_rejected", left[0].Headers["x-death-reason"], "headers unchanged")
}

func TestInspectScansAtMostScan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.dead(t, "a", "b", "a", "b")
	rep, err := deadletter.Inspect(t.Context(), b.conn, b.top, deadletter.InspectOptions{Scan: 3})
	require.NoError(t, err)
	require.Equal(t, 4, rep.Total)
	require.Equal(t, 3, rep.Scanned)
	require.Equal(t, map[string]int{"a": 2, "b": 1}, rep.ByReason)
	require.Len(t, b.drain(t, b.top.DeadQueue()), 4)
}

func TestReplayMovesTheSelectedAndResetsTheirCustomers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.dead(t, "crm_rejected", "invalid_message", "crm_rejected", "crm_rejected")
	store := &resetter{}

	res, err := deadletter.Replay(t.Context(), b.conn, b.top, store, deadletter.ReplayOptions{Reason: "crm_rejected", Limit: 2})
	require.NoError(t, err)
	require.Equal(t, 2, res.Replayed)
	require.Equal(t, map[string]int{"crm_rejected": 2}, res.ByReason)
	require.Equal(t, 1, res.Kept)
	require.Equal(t, 2, res.Left)
	require.Equal(t, []string{"c0@example.com", "c2@example.com"}, store.emails)

	var work []amqp.Delivery
	require.Eventually(t, func() bool {
		work = append(work, b.drain(t, b.top.Queue())...)
		return len(work) == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"d0", "d2"}, ids(work))
	require.NotContains(t, work[0].Headers, "x-death-reason", "dead-letter headers are removed")
	require.Equal(t, "crm_rejected", work[0].Headers["x-replayed-reason"])
	require.Equal(t, int64(1), work[0].Headers["x-row"], "the row's own headers stay")

	require.Equal(t, []string{"d3", "d1"}, ids(b.drain(t, b.top.DeadQueue())), "not replayed: still there")
}

func TestReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    amqp.Table
		want string
	}{
		{"consumer's", amqp.Table{"x-death-reason": "crm_rejected"}, "crm_rejected"},
		{"broker's", amqp.Table{"x-death": []any{amqp.Table{"reason": "delivery_limit"}}}, "delivery_limit"},
		{"none", amqp.Table{}, "unknown"},
	} {
		require.Equal(t, tc.want, deadletter.Reason(tc.h), tc.name)
	}
}
