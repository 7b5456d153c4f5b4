package main

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// The machine is shared: another process running a benchmark at the same
// time skews every number. The suite waits for the machine to be idle
// before each run and reports runs during which other processes took a
// noticeable share of the CPU. Both read Linux's /proc and do nothing
// where it is missing.

// cpuSample is the machine's CPU time and that of some processes, in clock
// ticks.
type cpuSample struct {
	busy, total float64 // all CPUs; see sampleCPU for what counts as busy
	procs       float64 // the given processes, user + system
	ok          bool
}

func sampleCPU(pids ...int) cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	// user nice system idle iowait irq softirq steal. Interrupt time is
	// charged to no process and is mostly the loopback traffic of the
	// benchmark itself, so it is not busy; steal (the hypervisor ran
	// another machine) is, like another process.
	for i, v := range f[1:9] {
		n, _ := strconv.ParseFloat(string(v), 64)
		s.total += n
		if i <= 2 || i == 7 {
			s.busy += n
		}
	}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return cpuSample{}
		}
		// Fields after the command, which may hold spaces: state is the
		// first, utime and stime the 12th and 13th.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			return cpuSample{}
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 13 {
			return cpuSample{}
		}
		for _, v := range f[11:13] {
			n, _ := strconv.ParseFloat(string(v), 64)
			s.procs += n
		}
	}
	s.ok = true
	return s
}

// othersShare is the share of the machine's CPU (0–1) that processes other
// than the sampled ones used between a and b; ok is false if unknown.
func othersShare(a, b cpuSample) (float64, bool) {
	if !a.ok || !b.ok || b.total <= a.total {
		return 0, false
	}
	others := (b.busy - a.busy) - (b.procs - a.procs)
	return max(others, 0) / (b.total - a.total), true
}

// waitIdleMachine waits, up to limit, until other processes use less than
// 20% of the machine over 300ms (with none of the suite's servers running). It returns
// the time waited and whether the machine got idle.
func waitIdleMachine(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		a := sampleCPU(os.Getpid())
		time.Sleep(300 * time.Millisecond)
		b := sampleCPU(os.Getpid())
		share, ok := othersShare(a, b)
		if !ok || share < 0.2 {
			return time.Since(start), true
		}
		if time.Since(start) >= limit {
			return time.Since(start), false
		}
	}
}
