package testenv

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custimport/custimport/libs/rabbit"
)

// defaultClusterURLs are the nodes `make cluster` starts.
var defaultClusterURLs = []string{
	"amqp://guest:guest@127.0.0.1:5681/",
	"amqp://guest:guest@127.0.0.1:5682/",
	"amqp://guest:guest@127.0.0.1:5683/",
}

// ClusterURLs returns the AMQP URLs of the nodes of a RabbitMQ cluster:
// TEST_CLUSTER_AMQP_URL (comma-separated) when set, otherwise the three
// nodes of `make cluster` on 127.0.0.1:5681-5683. Every node must answer;
// when one does not, the test is skipped with a message saying how to start
// them, or fails under CI=true (.ci/run starts the cluster).
func ClusterURLs(t testing.TB) []string {
	t.Helper()
	urls := defaultClusterURLs
	if list := os.Getenv("TEST_CLUSTER_AMQP_URL"); list != "" {
		var err error
		if urls, err = rabbit.ParseURLs(list); err != nil {
			t.Fatalf("TEST_CLUSTER_AMQP_URL: %v", err)
		}
	}
	for _, u := range urls {
		if !answers(u, "5672") {
			unavailable(t, "no RabbitMQ cluster node answers at "+rabbit.Redact(u)+": start one with make cluster (or set TEST_CLUSTER_AMQP_URL)")
		}
	}
	return urls
}

// ClusterTopology is Topology for a cluster: names of its own, the given
// retry steps, one replica per URL in list, and its queues and exchanges
// deleted through list when the test ends.
func ClusterTopology(t testing.TB, list []string, retryDelays ...time.Duration) rabbit.Topology {
	t.Helper()
	if len(retryDelays) == 0 {
		retryDelays = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}
	}
	joined := strings.Join(list, ",")
	top := rabbit.Topology{Prefix: Name(t), RetryDelays: retryDelays, Replicas: rabbit.Replicas(joined)}.WithDefaults()
	t.Cleanup(func() { deleteTopology(t, joined, top) })
	return top
}

func deleteTopology(t testing.TB, list string, top rabbit.Topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := rabbit.Dial(ctx, list, "testenv-cleanup")
	if err != nil {
		t.Logf("delete topology %s: %v", top.Prefix, err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("delete topology %s: %v", top.Prefix, err)
		return
	}
	if err := top.Delete(ch); err != nil {
		t.Logf("delete topology %s: %v", top.Prefix, err)
	}
}

// EditURL returns rawURL changed by edit: a service's URL with another
// host, user, password or path, for tests of what a client does with it.
func EditURL(t testing.TB, rawURL string, edit func(u *url.URL)) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %s: %v", rabbit.Redact(rawURL), err)
	}
	edit(u)
	return u.String()
}
