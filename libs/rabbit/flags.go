package rabbit

import (
	"strconv"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/envflag"
)

// The environment variables of the topology flags.
const (
	EnvQueuePrefix   = "QUEUE_PREFIX"
	EnvRetryDelays   = "RETRY_DELAYS"
	EnvDeliveryLimit = "DELIVERY_LIMIT"
)

// BindTopologyFlags registers --queue-prefix, --retry-delays and
// --delivery-limit on s, with their variables and the defaults of
// Topology.WithDefaults, writing into the fields a command's Config keeps.
// Every command that declares the topology binds them here, so the producer
// and the consumers cannot drift apart in names, variables or defaults.
func BindTopologyFlags(s *envflag.Set, prefix *string, retryDelays *[]time.Duration, deliveryLimit *int) {
	def := Topology{}.WithDefaults()
	s.String(prefix, "queue-prefix", EnvQueuePrefix, def.Prefix, "prefix of the exchange and queue names")
	s.Durations(retryDelays, "retry-delays", EnvRetryDelays, def.RetryDelays,
		"backoff steps of the retry queues (the same for the producer and every consumer)")
	s.Int(deliveryLimit, "delivery-limit", EnvDeliveryLimit, def.DeliveryLimit,
		"deliveries of one message before the broker dead-letters it (the same for the producer and every consumer)")
}

// Env is the environment that gives a command started by a harness (e2e,
// chaos, bench) this topology, through the variables of BindTopologyFlags.
func (t Topology) Env() []string {
	t = t.WithDefaults()
	delays := make([]string, len(t.RetryDelays))
	for i, d := range t.RetryDelays {
		delays[i] = d.String()
	}
	return []string{
		EnvQueuePrefix + "=" + t.Prefix,
		EnvRetryDelays + "=" + strings.Join(delays, ","),
		EnvDeliveryLimit + "=" + strconv.Itoa(t.DeliveryLimit),
	}
}
