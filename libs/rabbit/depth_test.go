package rabbit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

func TestManagementDepthsReadsTheAnswer(t *testing.T) {
	t.Parallel()
	var gotPath, gotUser, gotPass string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		gotUser, gotPass, _ = r.BasicAuth()
		_, _ = w.Write([]byte(`[{"name":"p.import","messages":7,"messages_ready":5,"messages_unacknowledged":2,"consumers":3},{"name":"other","messages":1}]`))
	}))
	t.Cleanup(srv.Close)
	u := strings.Replace(srv.URL, "http://", "http://ops:pw@", 1)
	qs, err := rabbit.ManagementDepths(t.Context(), srv.Client(), u, "/", []string{"p.import", "p.dead"})
	require.NoError(t, err)
	require.Equal(t, "/api/queues/%2F", gotPath)
	require.Equal(t, "ops", gotUser)
	require.Equal(t, "pw", gotPass)
	require.Equal(t, "p.import", qs[0].Name)
	require.Equal(t, int64(7), qs[0].Messages)
	require.Equal(t, int64(5), *qs[0].Ready)
	require.Equal(t, int64(2), *qs[0].Unacked)
	require.Equal(t, int64(3), qs[0].Consumers)
	require.True(t, qs[1].Missing)

	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(refuse.Close)
	_, err = rabbit.ManagementDepths(t.Context(), refuse.Client(), strings.Replace(refuse.URL, "http://", "http://ops:secret@", 1), "/", []string{"p.import"})
	require.ErrorIs(t, err, rabbit.ErrManagement)
	require.ErrorContains(t, err, "401")
	require.NotContains(t, err.Error(), "secret")
}

func TestAMQPDepthsCountsReadyAndMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.pub.PublishAll(t.Context(), []rabbit.Message{{
		Exchange: b.top.Exchange(), Key: rabbit.ImportKey,
		Publishing: amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")},
	}}))
	qs, err := rabbit.AMQPDepths(b.conn, []string{b.top.Queue(), testenv.Topology(t).Queue(), b.top.DeadQueue()})
	require.NoError(t, err)
	require.Equal(t, int64(1), qs[0].Messages)
	require.Nil(t, qs[0].Ready, "AMQP cannot tell ready from unacked")
	require.True(t, qs[1].Missing)
	require.False(t, qs[2].Missing)
	require.Zero(t, qs[2].Messages)
}
