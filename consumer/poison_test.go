package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// A message whose headers are just under the broker's frame limit breaks
// the connection of the consumer it is delivered to, every time: RabbitMQ
// 3.10 (frame_max 131072) takes it, then delivers it in a header frame a
// few bytes over the negotiated frame_max, which the client refuses. It
// must cost only itself: 300 good messages, the poison one, 300 good, one
// consumer: all 600 good ones synced, only the poison one dead-lettered
// (by the broker, at the delivery limit: the consumer never reads it).
func TestPoisonNearFrameMaxCostsOnlyItself(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	good := func(from int) []rabbit.Message {
		msgs := make([]rabbit.Message, 300)
		for i := range msgs {
			msgs[i] = rabbit.Message{Exchange: b.top.Exchange(), Key: rabbit.ImportKey, Publishing: amqp.Publishing{
				MessageId: fmt.Sprint("m", from+i), ContentType: "application/json", DeliveryMode: amqp.Persistent,
				Body: body(t, fmt.Sprintf("user%d@example.com", from+i), from+i),
			}}
		}
		return msgs
	}
	poison := rabbit.Message{Exchange: b.top.Exchange(), Key: rabbit.ImportKey, Publishing: amqp.Publishing{
		MessageId: "poison", ContentType: "application/json", DeliveryMode: amqp.Persistent,
		Headers: amqp.Table{"x-padding": strings.Repeat("p", poisonPadding)},
		Body:    body(t, "poison@example.com", 0),
	}}
	require.NoError(t, b.pub.PublishAll(t.Context(), good(1)))
	require.NoError(t, b.pub.PublishAll(t.Context(), []rabbit.Message{poison}))
	require.NoError(t, b.pub.PublishAll(t.Context(), good(301)))
	// A prefetch of 16: the deliveries in flight at a loss are taken one at
	// a time afterwards, which a quorum queue serves at the pace of its log.
	b.env["CONSUMER_PREFETCH"] = "16"
	b.startWorker(t, "w1", nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DEBUGLOGS\n%s", b.logs.String())
		}
	})

	// About twenty lost connections before the broker gives up on it.
	require.Eventually(t, func() bool { return b.counts(t)[pgstore.StateSynced] == 600 }, 5*time.Minute, 100*time.Millisecond)
	// The dead letter cannot be read back either (its frame is larger
	// still): the queue depths say where it went.
	require.Eventually(t, func() bool {
		return b.queueDepth(t, b.top.Queue()) == 0 && b.queueDepth(t, b.top.DeadQueue()) == 1
	}, 60*time.Second, 50*time.Millisecond, "only the poison message is dead-lettered")
	require.Equal(t, 600, b.crm.Stats().Created)
	require.Equal(t, map[pgstore.State]int64{pgstore.StatePending: 0, pgstore.StateSynced: 600, pgstore.StateRejected: 0, pgstore.StateFailed: 0}, b.counts(t),
		"the poison message was never read, so never stored")
	require.NotContains(t, b.logs.String(), "msg=dead-lettered", "the broker dead-lettered it at the delivery limit, not the consumer")
	t.Logf("connections lost: %d", strings.Count(b.logs.String(), "RabbitMQ session ended"))
}

// poisonPadding is the header value that, with the properties the test's
// poison message has, RabbitMQ 3.10.8 takes from a publisher and delivers
// over the negotiated frame_max (measured: 131,009 to 131,014 bytes do).
const poisonPadding = 131_009
