package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"
)

// Results is one run's figures, as printed and as written to JSON for
// comparisons over time.
type Results struct {
	RunID         string    `json:"run_id"`
	Started       time.Time `json:"started"`
	Elapsed       float64   `json:"elapsed_seconds"`
	GoVersion     string    `json:"go_version"`
	CPUs          int       `json:"cpus"`
	Rows          int64     `json:"rows"`
	FileBytes     int64     `json:"file_bytes"`
	MessageBytes  int       `json:"message_body_bytes"`
	Consumers     int       `json:"consumers"`
	Channels      int       `json:"channels"`
	ProbeMessages int       `json:"probe_messages"`
	// LoadBefore and LoadAfter are /proc/loadavg around the run: other work
	// on the machine shows there.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// Cluster says why the cluster rows are missing; empty when they were
	// measured.
	Cluster string   `json:"cluster_skipped,omitempty"`
	Figures []Figure `json:"figures"`
}

// Figure is one measured figure and its ratio to what bounds it.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Ratio is Value over the figure named Of.
	Ratio float64 `json:"ratio,omitempty"`
	Of    string  `json:"ratio_of,omitempty"`
	// Target is the ratio to reach, or with TargetIsMax the value not to
	// exceed.
	Target      float64 `json:"target,omitempty"`
	TargetIsMax bool    `json:"target_is_max,omitempty"`
	Met         *bool   `json:"met,omitempty"`
	ProducerRSS float64 `json:"producer_peak_rss_mib,omitempty"`
	ConsumerRSS float64 `json:"consumer_peak_rss_mib,omitempty"`
	CPU         CPU     `json:"cpu_seconds"`
	// Rows is the rows (or messages) the figure moved; CPUPerRow is CPU
	// spread over them.
	Rows      int64      `json:"rows,omitempty"`
	CPUPerRow *CPUPerRow `json:"cpu_us_per_row,omitempty"`
	// OneNode is, for a figure measured on the cluster, the same figure on
	// one broker in this run (its Ratio is the cluster's share of it).
	OneNode float64 `json:"one_node_value,omitempty"`
}

// CPUPerRow is each process's CPU microseconds per row of one figure.
type CPUPerRow struct {
	Client    float64 `json:"client"`
	Consumers float64 `json:"consumers"`
	CRM       float64 `json:"mockcrm"`
	Broker    float64 `json:"rabbitmq"`
	Postgres  float64 `json:"postgres"`
}

func (r *Results) add(f Figure) {
	if c := &f.CPU; c.BusySeconds > 0 {
		c.Other = max(0, c.BusySeconds-(c.Client+c.Consumers+c.CRM+c.Broker+c.Postgres))
	}
	if c := f.CPU; f.Rows > 0 && c != (CPU{}) {
		us := 1e6 / float64(f.Rows)
		f.CPUPerRow = &CPUPerRow{Client: c.Client * us, Consumers: c.Consumers * us, CRM: c.CRM * us, Broker: c.Broker * us, Postgres: c.Postgres * us}
	}
	if f.Target > 0 {
		met := f.Ratio >= f.Target
		if f.TargetIsMax {
			met = f.Value <= f.Target
		}
		f.Met = &met
	}
	r.Figures = append(r.Figures, f)
}

func (r *Results) writeTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "custimport bench %s: %d rows (%.0f MiB), %d-byte bodies, %d CPUs, %s, %.0fs\n",
		r.RunID, r.Rows, mib(r.FileBytes), r.MessageBytes, r.CPUs, r.GoVersion, r.Elapsed); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "load average before %s, after %s\n", r.LoadBefore, r.LoadAfter); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tratio\tof\ttarget\tRSS MiB prod/cons\tCPU s client/cons/crm/rabbit/pg/other\tCPU µs/row client/cons/crm/rabbit/pg\tbusy")
	for _, f := range r.Figures {
		ratio, target := "", ""
		if f.Of != "" {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		if f.Met != nil {
			mark := "ok"
			if !*f.Met {
				mark = "MISSED"
			}
			if f.TargetIsMax {
				target = fmt.Sprintf("≤ %.0f %s %s", f.Target, f.Unit, mark)
			} else {
				target = fmt.Sprintf("≥ %.2f %s", f.Target, mark)
			}
		}
		rss := ""
		if f.ProducerRSS > 0 || f.ConsumerRSS > 0 {
			rss = fmt.Sprintf("%s/%s", orDash(f.ProducerRSS), orDash(f.ConsumerRSS))
		}
		cpu, perRow, busy := "", "", ""
		if c := f.CPU; c != (CPU{}) {
			cpu = fmt.Sprintf("%.1f/%.1f/%.1f/%.1f/%.1f/%.1f", c.Client, c.Consumers, c.CRM, c.Broker, c.Postgres, c.Other)
			busy = fmt.Sprintf("%.0f%%", 100*c.Busy)
		}
		if c := f.CPUPerRow; c != nil {
			perRow = fmt.Sprintf("%.0f/%.0f/%.0f/%.0f/%.0f", c.Client, c.Consumers, c.CRM, c.Broker, c.Postgres)
		}
		fmt.Fprintf(tw, "%s\t%.0f %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Value, f.Unit, ratio, f.Of, target, rss, cpu, perRow, busy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.writeCluster(w)
}

// writeCluster prints the cluster column: each figure measured on the
// cluster beside the same on one broker, or the one line saying why there
// is none.
func (r *Results) writeCluster(w io.Writer) error {
	if r.Cluster != "" {
		_, err := fmt.Fprintln(w, r.Cluster)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nreplication cost\tone node\tcluster\tcluster/one node")
	for _, f := range r.Figures {
		if f.OneNode > 0 {
			fmt.Fprintf(tw, "%s\t%.0f %s\t%.0f %s\t%.2f\n", f.Name, f.OneNode, f.Unit, f.Value, f.Unit, f.Ratio)
		}
	}
	return tw.Flush()
}

func orDash(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func (r *Results) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create the folder of %s: %w", path, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
