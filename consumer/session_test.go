package main

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// collect waits for the first delivery as long as it takes, then at most
// the batch wait for the rest; a full batch goes at once.
func TestCollectWaitsForTheFirstThenBatchWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		deliveries := make(chan amqp.Delivery, 10)
		stop := make(chan struct{})
		got := make(chan []amqp.Delivery)
		go func() {
			b, _ := collect(t.Context(), stop, deliveries, 3, 50*time.Millisecond)
			got <- b
		}()
		time.Sleep(time.Hour) // nothing comes: still waiting
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("collect returned without a delivery")
		default:
		}
		start := time.Now()
		deliveries <- amqp.Delivery{DeliveryTag: 1}
		b := <-got
		require.Len(t, b, 1)
		require.Equal(t, 50*time.Millisecond, time.Since(start), "a partial batch goes after the batch wait")

		for tag := range uint64(4) {
			deliveries <- amqp.Delivery{DeliveryTag: tag}
		}
		start = time.Now()
		b, err := collect(t.Context(), stop, deliveries, 3, 50*time.Millisecond)
		require.NoError(t, err)
		require.Len(t, b, 3)
		require.Zero(t, time.Since(start), "a full batch goes at once")
	})
}

func TestCollectEndsOnStopAndClose(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		deliveries := make(chan amqp.Delivery, 1)
		stop := make(chan struct{})
		close(stop)
		b, err := collect(t.Context(), stop, deliveries, 3, time.Second)
		require.NoError(t, err)
		require.Empty(t, b)

		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		b, err = collect(ctx, make(chan struct{}), deliveries, 3, time.Second)
		require.NoError(t, err)
		require.Empty(t, b)

		deliveries <- amqp.Delivery{DeliveryTag: 1}
		close(deliveries)
		b, err = collect(t.Context(), make(chan struct{}), deliveries, 3, time.Second)
		require.ErrorIs(t, err, errDeliveriesClosed)
		require.Len(t, b, 1, "what came before the close is kept")
	})
}
