package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const healthSummary = `consumer health asks a running consumer's /healthz and exits 0 when it
answers 200, 1 otherwise: a healthcheck for images with no shell or curl.

Usage:
  consumer health [flags]`

func health(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		addr    string
		timeout time.Duration
	)
	f := newFlags("consumer health", healthSummary, getenv, stderr)
	f.String(&addr, "http-addr", "CONSUMER_HTTP_ADDR", defaultHTTPAddr, "`address` the consumer serves /healthz on (its own --http-addr)")
	f.Duration(&timeout, "timeout", "", 3*time.Second, "how long to wait for the answer")
	if err := f.parse(args); err != nil {
		return err
	}
	url, err := healthURL(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // the operator's own address
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: GET %s: %s", url, resp.Status)
	}
	_, err = fmt.Fprintln(stdout, "ok")
	return err
}

// healthURL is /healthz on addr, a listen address: a host left out or
// unspecified (":9090", "0.0.0.0:9090") is this host.
func healthURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || addr == httpOff {
		return "", fmt.Errorf("--http-addr %q: want host:port or :port where the consumer serves /healthz", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
