package main

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// recorder is an amqp.Acknowledger that records multiple acks.
type recorder struct{ acked []uint64 }

func (r *recorder) Ack(tag uint64, multiple bool) error {
	if !multiple {
		panic("single acks are not expected")
	}
	r.acked = append(r.acked, tag)
	return nil
}
func (r *recorder) Nack(uint64, bool, bool) error { return nil }
func (r *recorder) Reject(uint64, bool) error     { return nil }

func TestAckerAcksInDeliveryOrder(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	batch := func(from, to uint64) []amqp.Delivery {
		var ds []amqp.Delivery
		for tag := from; tag <= to; tag++ {
			ds = append(ds, amqp.Delivery{Acknowledger: rec, DeliveryTag: tag})
		}
		return ds
	}
	var a acker
	b1, b2, b3 := a.add(batch(1, 10)), a.add(batch(11, 20)), a.add(batch(21, 25))

	require.NoError(t, a.done(b2))
	require.Empty(t, rec.acked, "batch 2 must wait for batch 1")
	require.NoError(t, a.done(b1))
	require.Equal(t, []uint64{20}, rec.acked, "one ack for both")
	require.NoError(t, a.done(b3))
	require.Equal(t, []uint64{20, 25}, rec.acked)
}
