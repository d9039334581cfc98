package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/custimport/custimport/libs/process"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times. It is 100
// on every mainstream Linux build; reading sysconf would take cgo.
const clockTicks = 100

// cpuSnapshot is the CPU ticks of the processes the bench does not start
// itself (the broker and Postgres), of the bench itself, and of the machine.
type cpuSnapshot struct {
	broker, postgres map[int]int64 // ticks by pid
	self             int64
	busy, total      int64 // /proc/stat, all CPUs
}

// takeCPU reads /proc. Postgres backends that exit between two snapshots
// take their ticks with them, so snapshots are taken while the consumers,
// whose pools hold the backends, still run.
func takeCPU() cpuSnapshot {
	s := cpuSnapshot{broker: map[int]int64{}, postgres: map[int]int64{}}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ticks, ok := procTicks(pid)
		if !ok {
			continue
		}
		switch {
		case comm == "beam.smp":
			s.broker[pid] = ticks
		case comm == "postgres" || strings.HasPrefix(comm, "postgres"):
			s.postgres[pid] = ticks
		}
	}
	if _, ticks, ok := procTicks(os.Getpid()); ok {
		s.self = ticks
	}
	s.busy, s.total = machineTicks()
	return s
}

// procTicks returns a process's command name and utime+stime.
func procTicks(pid int) (string, int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	line := string(b)
	open, closing := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	comm := line[open+1 : closing]
	// After the command: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime: utime is the 12th field.
	f := strings.Fields(line[closing+1:])
	if len(f) < 13 {
		return "", 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return comm, ut + st, true
}

// machineTicks returns the busy and total ticks of all CPUs.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		// user nice system idle iowait irq softirq steal: idle and iowait
		// are not busy.
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total
}

func deltaTicks(before, after map[int]int64) float64 {
	var sum int64
	for pid, t := range after {
		sum += t - before[pid]
	}
	return float64(sum) / clockTicks
}

// CPU is the CPU seconds each side spent in one measured phase.
type CPU struct {
	// Client is the producer, or the bench itself for a broker probe.
	Client    float64 `json:"client"`
	Consumers float64 `json:"consumers"`
	CRM       float64 `json:"mockcrm"`
	Broker    float64 `json:"rabbitmq"`
	Postgres  float64 `json:"postgres"`
	// Busy is the machine's busy share of all its CPUs, 0 to 1, and
	// BusySeconds the same in CPU seconds.
	Busy        float64 `json:"machine_busy"`
	BusySeconds float64 `json:"machine_busy_seconds"`
	// Other is the busy CPU seconds of none of the above: other work on the
	// machine, which makes the figures less trustworthy.
	Other float64 `json:"other"`
}

// between fills the broker, Postgres and machine figures from two snapshots.
func between(a, b cpuSnapshot) CPU {
	c := CPU{Broker: deltaTicks(a.broker, b.broker), Postgres: deltaTicks(a.postgres, b.postgres)}
	if dt := b.total - a.total; dt > 0 {
		c.Busy = float64(b.busy-a.busy) / float64(dt)
	}
	c.BusySeconds = float64(b.busy-a.busy) / clockTicks
	return c
}

// profiler is a perf(1) recording of some of the bench's processes.
type profiler struct {
	b      *bench
	cmd    *exec.Cmd
	data   string
	report string
}

// startPerf records procs with call graphs until finish. Without perf, or
// where the kernel forbids it, the run goes on unprofiled.
func (b *bench) startPerf(name string, procs []*process.Process) *profiler {
	pids := make([]string, len(procs))
	for i, p := range procs {
		pids[i] = strconv.Itoa(p.Pid())
	}
	pr := &profiler{b: b, data: filepath.Join(b.logDir, name+".perf.data"), report: filepath.Join(b.logDir, name+".perf.txt")}
	pr.cmd = exec.Command("perf", "record", "-F", "499", "-g", "-o", pr.data, "-p", strings.Join(pids, ",")) //nolint:noctx,gosec // stopped by SIGINT in finish; pids and a path of our own
	log, err := os.Create(filepath.Join(b.logDir, name+".perf.log"))
	if err == nil {
		pr.cmd.Stdout, pr.cmd.Stderr = log, log
		defer log.Close()
	}
	if err := pr.cmd.Start(); err != nil {
		b.logger.Warn("perf record did not start; the run goes on unprofiled", "err", err)
		return nil
	}
	return pr
}

// finish stops the recording and writes the report: the hottest symbols per
// process, self time.
func (pr *profiler) finish(ctx context.Context) {
	if pr == nil {
		return
	}
	_ = pr.cmd.Process.Signal(os.Interrupt)
	if err := pr.cmd.Wait(); err != nil {
		pr.b.logger.Warn("perf record", "err", err)
	}
	//nolint:gosec // a path of our own
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", pr.data, "--stdio", "--no-children",
		"--sort", "comm,symbol", "--percent-limit", "0.7", "-g", "none").Output()
	if err != nil {
		pr.b.logger.Warn("perf report", "err", err)
		return
	}
	if err := os.WriteFile(pr.report, out, 0o600); err != nil {
		pr.b.logger.Warn("write perf report", "err", err)
		return
	}
	pr.b.logger.Info("profile written", "report", pr.report, "data", pr.data)
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
