package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// The realtime and sse suites run the same three workloads, each run
// against its server in a fresh child process (see serveChild), driven
// through a target:
//
//   - fanout: cfg.subscribers on one topic (room) and one publisher that
//     keeps cfg.window payloads in flight, a payload being done when every
//     subscriber got it; deliveries_per_s over cfg.duration after a
//     warm-up.
//   - latency: the same topic, the publisher at a fixed cfg.rate;
//     latency_p50_ms and latency_p99_ms of receipt − send over every
//     delivery of cfg.duration after a warm-up.
//   - idle: cfg.idleConns connections that connect (and, for SSE,
//     subscribe) and do nothing; idle_bytes_per_conn is the growth of the
//     server's HeapInuse+StackInuse after GC, per connection.
//
// The generator shares the machine's cores with the server, and its work
// per payload is the same whichever server it drives.

// loadSuite is a suite of the three workloads over a set of servers.
type loadSuite struct {
	name    string
	servers []string
	// extra servers run only when -servers names them.
	extra []string
	// child is the -serve name of a server's child process.
	child func(server string) string
	// target connects the generator to a server's child.
	target func(cfg config, server string, ch *child) target
}

// warmUp runs the publisher before a measurement starts.
const warmUp = time.Second

type workload struct {
	name    string
	metrics []metric
	run     func(cfg config, ch *child, t target, profile bool) ([]float64, error)
	// only names the one suite that runs it ("": every suite).
	only string
}

var workloads = []workload{
	{"fanout", []metric{{"deliveries_per_s", "msg/s"}}, fanoutRun, ""},
	{"latency", []metric{{"latency_p50_ms", "ms"}, {"latency_p99_ms", "ms"}}, latencyRun, ""},
	{"idle", []metric{{"idle_bytes_per_conn", "B"}}, idleRun, ""},
	{"lat50", []metric{{"latency_p50_ms", "ms"}, {"latency_p99_ms", "ms"},
		{"server_cpu_us_per_delivery", "µs"}, {"wire_bytes_per_delivery", "B"}}, lat50Run, ""},
	{"lat50s", []metric{{"latency_p50_ms", "ms"}, {"latency_p99_ms", "ms"},
		{"server_cpu_us_per_delivery", "µs"}, {"wire_bytes_per_delivery", "B"}}, lat50sRun, "realtime"},
	{"lat20", []metric{{"latency_p50_ms", "ms"}, {"latency_p99_ms", "ms"},
		{"server_cpu_us_per_delivery", "µs"}, {"wire_bytes_per_delivery", "B"}}, lat20Run, "sse"},
	{"join5k", []metric{{"join_s", "s"}, {"dropped", "members"}}, join5kRun, "realtime"},
	{"join20k", []metric{{"join_s", "s"}, {"dropped", "members"}, {"members", "members"}}, join20kRun, "realtime"},
}

func (s loadSuite) run(cfg config) ([]Result, error) {
	var names []string
	for _, wl := range workloads {
		if wl.only == "" || wl.only == s.name {
			names = append(names, wl.name)
		}
	}
	if err := checkNames(cfg, append(slices.Clone(s.servers), s.extra...), names); err != nil {
		return nil, err
	}
	servers := s.servers
	for _, srv := range s.extra {
		if cfg.servers != nil && want(cfg.servers, srv) {
			servers = append(slices.Clone(servers), srv)
		}
	}
	var out []Result
	for _, wl := range workloads {
		if !want(cfg.workloads, wl.name) || (wl.only != "" && wl.only != s.name) {
			continue
		}
		for _, srv := range servers {
			if !want(cfg.servers, srv) {
				continue
			}
			res := make([]Result, len(wl.metrics))
			for i, m := range wl.metrics {
				res[i] = Result{Suite: s.name, Workload: wl.name, Server: srv, Metric: m.name, Unit: m.unit}
			}
			for run := range cfg.runs {
				vals, err := s.runRetry(cfg, wl, srv, run)
				if err != nil {
					note("%s %s %s run %d failed: %v", s.name, wl.name, srv, run+1, err)
					continue
				}
				for i := range res {
					res[i].Runs = append(res[i].Runs, vals[i])
				}
			}
			out = append(out, res...)
		}
	}
	return out, nil
}

// maxOthersCPU is the share of the machine's CPU that other processes may
// take during a measurement before the run is repeated.
const maxOthersCPU = 0.15

// runRetry runs one workload once the machine is idle, and again (up to
// twice) when other processes took more than maxOthersCPU of the CPU
// during the measurement: another benchmark running beside this one makes
// its numbers meaningless.
func (s loadSuite) runRetry(cfg config, wl workload, srv string, run int) ([]float64, error) {
	for attempt := 1; ; attempt++ {
		if waited, idle := waitIdleMachine(cfg.idleWait); !idle {
			note("the machine is still busy after %s: other processes use the CPU", waited.Round(time.Second))
		} else if waited > time.Second {
			note("waited %s for other processes to leave the CPU", waited.Round(time.Second))
		}
		start := time.Now()
		vals, others, err := s.runOnce(cfg, wl, srv, run == 0 && cfg.profiles != "")
		if err != nil {
			return nil, err
		}
		note("%s %s %s run %d: %v (%s)", s.name, wl.name, srv, run+1, vals, time.Since(start).Round(100*time.Millisecond))
		if others <= maxOthersCPU {
			return vals, nil
		}
		if attempt > cfg.retries {
			note("%s %s %s run %d: kept although other processes used %.0f%% of the CPU", s.name, wl.name, srv, run+1, 100*others)
			return vals, nil
		}
		note("%s %s %s run %d: other processes used %.0f%% of the CPU; running it again", s.name, wl.name, srv, run+1, 100*others)
	}
}

// runOnce runs one workload against a fresh server process. It also
// returns the share of the CPU other processes used while it measured.
func (s loadSuite) runOnce(cfg config, wl workload, srv string, profile bool) ([]float64, float64, error) {
	var flags []string
	if profile && wl.name == "idle" {
		// Record every allocation, so that the heap profile gives each
		// site's exact bytes rather than an estimate from samples (one per
		// 512 KiB by default, a few hundred per run). It costs allocation
		// time, which idle does not measure, and no heap.
		flags = []string{"-memprofilerate", "1"}
	}
	ch, err := startChild(s.child(srv), flags...)
	if err != nil {
		return nil, 0, err
	}
	defer ch.stop()
	vals, err := wl.run(cfg, ch, s.target(cfg, srv, ch), profile)
	return vals, ch.othersCPU, err
}

// measureCPU returns a function to call at the end of a measurement: it
// records in ch.othersCPU the share of the CPU other processes used since.
func measureCPU(ch *child) func() {
	a := sampleCPU(os.Getpid(), ch.cmd.Process.Pid)
	return func() {
		b := sampleCPU(os.Getpid(), ch.cmd.Process.Pid)
		if share, ok := othersShare(a, b); ok {
			ch.othersCPU = max(ch.othersCPU, share)
		}
	}
}

// noteTroubles reports the server's trouble counters (slow consumers,
// drops); call it before the generator closes its connections.
func noteTroubles(workload string, ch *child) {
	if t := ch.troubles(true); t != "" {
		note("%s %s: server counters: %s", workload, ch.name, t)
	}
}

// profileName is the file of a child's profile in cfg.profiles:
// "rtkit-fanout-cpu.pprof", "sse-rtkit-idle-heap.pprof".
func profileName(ch *child, kind string) string {
	return strings.ReplaceAll(ch.name, "/", "-") + "-" + kind + ".pprof"
}

// fanoutRun measures deliveries per second with cfg.window payloads in
// flight.
func fanoutRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := t.room(ctx, cfg.subscribers)
	if err != nil {
		return nil, err
	}
	defer r.close()

	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	var lost, stalls int
	go func() { pubDone <- publishWindow(ctx, r, cfg.window, stop, &lost, &stalls) }()
	time.Sleep(warmUp)

	profDone := make(chan error, 1)
	if profile {
		go func() {
			path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(cfg.duration.Seconds()))
			profDone <- ch.saveProfile(path, cfg.profiles, profileName(ch, "fanout-cpu"))
		}()
	}
	cpuDone := measureCPU(ch)
	n0, t0 := r.delivered(), time.Now()
	if cfg.trace {
		// The rate of each half second, to see how steady it is.
		var rates []int64
		for prev := n0; len(rates) < int(cfg.duration/(500*time.Millisecond)); {
			time.Sleep(500 * time.Millisecond)
			n := r.delivered()
			rates, prev = append(rates, (n-prev)*2), n
		}
		note("fanout %s: deliveries/s every 500ms: %v", ch.name, rates)
	} else {
		time.Sleep(cfg.duration)
	}
	n1, t1 := r.delivered(), time.Now()
	cpuDone()
	close(stop)
	err = <-pubDone
	if profile {
		if perr := <-profDone; perr != nil {
			note("fanout %s: CPU profile: %v", ch.name, perr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	if n, rerr := r.readErrors(); n > 0 {
		note("fanout %s: %d connections failed, first: %v", ch.name, n, rerr)
	}
	noteTroubles("fanout", ch)
	if stalls > 0 {
		note("fanout %s: %d stalls, %d payloads not delivered to every subscriber within %s", ch.name, stalls, lost, stallTimeout)
	}
	return []float64{float64(n1-n0) / t1.Sub(t0).Seconds()}, nil
}

// stallTimeout is how long the fanout publisher waits for any payload to
// complete before it counts those in flight as lost and goes on.
const stallTimeout = 3 * time.Second

// publishWindow publishes until stop, keeping window payloads in flight.
func publishWindow(ctx context.Context, r audience, window int, stop <-chan struct{}, lost, stalls *int) error {
	inflight := 0
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	done := r.completed()
	for {
		for inflight >= window {
			timer.Reset(stallTimeout)
			select {
			case <-done:
				inflight--
			case <-timer.C:
				*stalls++
				*lost += inflight
				inflight = 0
			case <-stop:
				return nil
			}
		}
	drain:
		for inflight > 0 {
			select {
			case <-done:
				inflight--
			default:
				break drain
			}
		}
		select {
		case <-stop:
			return nil
		default:
		}
		if err := r.publish(ctx); err != nil {
			return err
		}
		inflight++
	}
}

// latencyRun publishes at cfg.rate and measures receipt − send.
func latencyRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	vals, err := latencyAt(cfg, ch, t, cfg.rate, "")
	if err != nil {
		return nil, err
	}
	return vals[:2], nil
}

// latencyAt publishes at rate and returns the p50 and p99 of receipt −
// send, the server's CPU time per delivery and the bytes it wrote per
// delivery over the measured window. With a profile name, it saves the
// server's CPU profile of the measured window under that name.
func latencyAt(cfg config, ch *child, t target, rate int, profile string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := t.room(ctx, cfg.subscribers)
	if err != nil {
		return nil, err
	}
	defer r.close()

	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	measuring := false
	var cpuDone func()
	var from uint64
	var measured time.Time
	var use0 usage
	var got0 int64
	var profDone chan error
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed >= warmUp+cfg.duration {
			break
		}
		if !measuring && elapsed >= warmUp {
			from, measured = r.published(), time.Now()
			r.measureFrom(from)
			measuring = true
			cpuDone = measureCPU(ch)
			if profile != "" && cfg.profiles != "" {
				profDone = make(chan error, 1)
				go func() {
					path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(int(cfg.duration.Seconds()), 1))
					profDone <- ch.saveProfile(path, cfg.profiles, profileName(ch, profile))
				}()
			}
			got0 = r.delivered()
			if use0, err = ch.usage(); err != nil {
				return nil, err
			}
		}
		if err := r.publish(ctx); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
	}
	var use1 usage
	var got1 int64
	if cpuDone != nil {
		cpuDone()
		// Let the payloads published last arrive, so that the work done
		// and the deliveries counted cover the same payloads.
		time.Sleep(100 * time.Millisecond)
		got1 = r.delivered()
		if use1, err = ch.usage(); err != nil {
			return nil, err
		}
	}
	// A publish that blocks longer than the tick interval lowers the rate
	// (the ticker drops ticks): say so, since latency then means less.
	if sent := r.published() - from; measuring && float64(sent) < 0.95*float64(rate)*time.Since(measured).Seconds() {
		note("latency %s: published %d in %s, below %d/s", ch.name, sent, time.Since(measured).Round(time.Millisecond), rate)
	}
	want := int64(r.published()) * int64(cfg.subscribers)
	for deadline := time.Now().Add(stallTimeout); r.delivered() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.delivered(); got < want {
		note("latency %s: %d of %d deliveries missing", ch.name, want-got, want)
	}
	noteTroubles("latency", ch)
	if n, rerr := r.readErrors(); n > 0 {
		note("latency %s: %d connections failed, first: %v", ch.name, n, rerr)
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			note("latency %s: CPU profile: %v", ch.name, err)
		}
	}
	r.close()
	h := r.latencies()
	if h.total() == 0 {
		return nil, fmt.Errorf("no delivery measured")
	}
	n := float64(max(got1-got0, 1))
	return []float64{h.quantile(0.50) / 1000, h.quantile(0.99) / 1000,
		float64(use1.CPUMicros-use0.CPUMicros) / n, float64(use1.WrittenBytes-use0.WrittenBytes) / n}, nil
}

// idleRun measures the server's memory per idle connection.
func idleRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before, err := ch.mem()
	if err != nil {
		return nil, err
	}
	closeConns, err := t.idle(ctx, cfg.idleConns)
	if err != nil {
		return nil, err
	}
	defer closeConns()
	// Let the server finish its side of every connection (goroutines
	// started after the handshake) before measuring: wait until the
	// goroutine count holds still over two samples (each one after a GC).
	after, err := ch.mem()
	for i := 0; err == nil && i < 20; i++ {
		time.Sleep(250 * time.Millisecond)
		var m memMeasure
		if m, err = ch.mem(); err != nil {
			break
		}
		settled := m.NumGoroutine == after.NumGoroutine
		after = m
		if settled {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	noteTroubles("idle", ch)
	n := float64(cfg.idleConns)
	note("idle %s: %.2f goroutines, %.0f B heap (%.0f B of live objects), %.0f B stack per connection", ch.name,
		float64(after.NumGoroutine-before.NumGoroutine)/n,
		(float64(after.HeapInuse)-float64(before.HeapInuse))/n,
		(float64(after.HeapAlloc)-float64(before.HeapAlloc))/n,
		(float64(after.StackInuse)-float64(before.StackInuse))/n)
	if profile {
		for _, prof := range []struct{ path, name string }{
			{"/debug/pprof/heap?gc=1", "idle-heap"},
			{"/debug/pprof/goroutine", "idle-goroutine"},
		} {
			if err := ch.saveProfile(prof.path, cfg.profiles, profileName(ch, prof.name)); err != nil {
				note("idle %s: %s profile: %v", ch.name, prof.name, err)
			}
		}
	}
	grown := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
	return []float64{grown / n}, nil
}
