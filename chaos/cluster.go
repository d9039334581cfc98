package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// cluster stops and starts the nodes of a RabbitMQ cluster with
// rabbitmqctl, for the cluster mode (--cluster-nodes): the faults a user of
// a cluster meets, a node going away under the import and coming back.
type cluster struct {
	nodes  []string // Erlang node names, in the order of the AMQP URLs
	logger *slog.Logger
	// down is how long a stopped node stays stopped.
	down time.Duration
}

// ctl runs rabbitmqctl against one node and returns its output.
func (c *cluster) ctl(ctx context.Context, node string, args ...string) (string, error) {
	//nolint:gosec // G204: node names are the operator's own flag
	cmd := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q", "-n", node}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %w: %s", node, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// leader asks the nodes in turn which node leads queue.
func (c *cluster) leader(ctx context.Context, queue string) (string, error) {
	var errs []error
	for _, n := range c.nodes {
		out, err := c.ctl(ctx, n, "list_queues", "--no-table-headers", "name", "leader")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == queue {
				return f[1], nil
			}
		}
		errs = append(errs, fmt.Errorf("%s lists no queue %s", n, queue))
	}
	return "", errors.Join(errs...)
}

// bounce stops the node that leads queue (or, when that is the node
// stopped last time, another one) with stop_app, waits, and starts it
// again; it returns once the node runs again, and whether it was stopped.
// ctx bounds the choice and the wait; a stop once begun runs to its end and
// the start runs even when ctx ends, so no node is left half stopped.
func (c *cluster) bounce(ctx context.Context, queue, last string) (node string, stopped bool, err error) {
	node, err = c.leader(ctx, queue)
	if err != nil {
		return "", false, err
	}
	if node == last || !slices.Contains(c.nodes, node) {
		for _, n := range c.nodes {
			if n != last {
				node = n
				break
			}
		}
	}
	restore, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	c.logger.Info("fault", "fault", string(faultStopNode), "node", node)
	if _, err := c.ctl(restore, node, "stop_app"); err != nil {
		return node, false, err
	}
	sleep(ctx, c.down)
	// start_app returns once the node runs again.
	if _, err := c.ctl(restore, node, "start_app"); err != nil {
		return node, true, err
	}
	c.logger.Info("fault over", "fault", string(faultStopNode), "node", node)
	return node, true, nil
}

// startAll starts the app of every node that is stopped: a run that ended
// mid-fault leaves the cluster whole.
func (c *cluster) startAll(ctx context.Context) {
	for _, n := range c.nodes {
		if out, err := c.ctl(ctx, n, "eval", "rabbit:is_running()."); err == nil && strings.TrimSpace(out) == "false" {
			if _, err := c.ctl(ctx, n, "start_app"); err != nil {
				c.logger.Error("could not start a stopped node", "node", n, "err", err)
			}
		}
	}
}
