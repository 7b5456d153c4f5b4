package main

import (
	"context"
	"fmt"
	"time"
)

// The realtime suite compares rtkit's hub with centrifuge and melody. Each
// run starts the server in a fresh child process (see serveChild) and
// drives it with the generator in loadgen.go:
//
//   - fanout: cfg.subscribers in one room and one publisher that keeps
//     cfg.window messages in flight, a message being done when every
//     subscriber got it; deliveries_per_s over cfg.duration after a
//     warm-up.
//   - latency: the same room, the publisher at a fixed cfg.rate;
//     latency_p50_ms and latency_p99_ms of receipt − send over every
//     delivery of cfg.duration after a warm-up.
//   - idle: cfg.idleConns connections that complete the handshake and do
//     nothing; idle_bytes_per_conn is the growth of the server's
//     HeapInuse+StackInuse after GC, per connection.
//
// The generator shares the machine's cores with the server, and its work
// per message is the same whichever server it drives.

var realtimeServers = []string{"rtkit", "centrifuge", "melody"}

// warmUp runs the publisher before a measurement starts.
const warmUp = time.Second

type realtimeWorkload struct {
	name    string
	metrics []metric
	run     func(cfg config, ch *child, p *protocol, profile bool) ([]float64, error)
}

var realtimeWorkloads = []realtimeWorkload{
	{"fanout", []metric{{"deliveries_per_s", "msg/s"}}, fanoutRun},
	{"latency", []metric{{"latency_p50_ms", "ms"}, {"latency_p99_ms", "ms"}}, latencyRun},
	{"idle", []metric{{"idle_bytes_per_conn", "B"}}, idleRun},
}

func realtimeSuite(cfg config) ([]Result, error) {
	var out []Result
	for _, wl := range realtimeWorkloads {
		if !want(cfg.workloads, wl.name) {
			continue
		}
		for _, srv := range realtimeServers {
			if !want(cfg.servers, srv) {
				continue
			}
			res := make([]Result, len(wl.metrics))
			for i, m := range wl.metrics {
				res[i] = Result{Suite: "realtime", Workload: wl.name, Server: srv, Metric: m.name, Unit: m.unit}
			}
			for run := range cfg.runs {
				start := time.Now()
				vals, err := realtimeRun(cfg, wl, srv, run == 0 && cfg.profiles != "")
				if err != nil {
					note("realtime %s %s run %d failed: %v", wl.name, srv, run+1, err)
					continue
				}
				note("realtime %s %s run %d: %v (%s)", wl.name, srv, run+1, vals, time.Since(start).Round(100*time.Millisecond))
				for i := range res {
					res[i].Runs = append(res[i].Runs, vals[i])
				}
			}
			out = append(out, res...)
		}
	}
	return out, nil
}

// realtimeRun runs one workload against a fresh server process.
func realtimeRun(cfg config, wl realtimeWorkload, srv string, profile bool) ([]float64, error) {
	ch, err := startChild(srv)
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	vals, err := wl.run(cfg, ch, protocols[srv], profile)
	if t := ch.troubles(); t != "" {
		note("realtime %s %s: server counters: %s", wl.name, srv, t)
	}
	return vals, err
}


// fanoutRun measures deliveries per second with cfg.window messages in
// flight.
func fanoutRun(cfg config, ch *child, p *protocol, profile bool) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := newRoom(ctx, ch.wsURL(), p, cfg.subscribers)
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.waitQuiet(10 * time.Second)

	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	var lost, stalls int
	go func() { pubDone <- r.publishWindow(ctx, cfg.window, stop, &lost, &stalls) }()
	time.Sleep(warmUp)

	profDone := make(chan error, 1)
	if profile {
		go func() {
			path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(cfg.duration.Seconds()))
			profDone <- ch.saveProfile(path, cfg.profiles, ch.name+"-fanout-cpu.pprof")
		}()
	}
	n0, t0 := r.delivered(), time.Now()
	time.Sleep(cfg.duration)
	n1, t1 := r.delivered(), time.Now()
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
	if rerr, n := r.readError(); n > 0 {
		note("fanout %s: %d connections failed, first: %v", ch.name, n, rerr)
	}
	if stalls > 0 {
		note("fanout %s: %d stalls, %d messages not delivered to every subscriber within %s", ch.name, stalls, lost, stallTimeout)
	}
	return []float64{float64(n1-n0) / t1.Sub(t0).Seconds()}, nil
}

// stallTimeout is how long the fanout publisher waits for any message to
// complete before it counts those in flight as lost and goes on.
const stallTimeout = 3 * time.Second

// publishWindow publishes until stop, keeping window messages in flight.
func (r *room) publishWindow(ctx context.Context, window int, stop <-chan struct{}, lost, stalls *int) error {
	inflight := 0
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	for {
		for inflight >= window {
			timer.Reset(stallTimeout)
			select {
			case <-r.done:
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
			case <-r.done:
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
func latencyRun(cfg config, ch *child, p *protocol, profile bool) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := newRoom(ctx, ch.wsURL(), p, cfg.subscribers)
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.waitQuiet(10 * time.Second)

	tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
	defer tick.Stop()
	start := time.Now()
	measuring := false
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed >= warmUp+cfg.duration {
			break
		}
		if !measuring && elapsed >= warmUp {
			r.measureFrom.Store(r.seq)
			measuring = true
		}
		if err := r.publish(ctx); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
	}
	want := int64(r.seq) * int64(cfg.subscribers)
	for deadline := time.Now().Add(stallTimeout); r.delivered() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.delivered(); got < want {
		note("latency %s: %d of %d deliveries missing", ch.name, want-got, want)
	}
	if rerr, n := r.readError(); n > 0 {
		note("latency %s: %d connections failed, first: %v", ch.name, n, rerr)
	}
	r.close()
	h := r.latencies()
	if h.total() == 0 {
		return nil, fmt.Errorf("no delivery measured")
	}
	return []float64{h.quantile(0.50) / 1000, h.quantile(0.99) / 1000}, nil
}

// idleRun measures the server's memory per idle connection.
func idleRun(cfg config, ch *child, p *protocol, profile bool) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before, err := ch.mem()
	if err != nil {
		return nil, err
	}
	clients, err := dialAll(ctx, ch.wsURL(), p, cfg.idleConns, false)
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	// Let the server finish its side of every connection (goroutines
	// started after the handshake) before measuring.
	after, err := ch.mem()
	for range 20 {
		if err != nil {
			return nil, err
		}
		time.Sleep(250 * time.Millisecond)
		var m memMeasure
		m, err = ch.mem()
		if err == nil && m.NumGoroutine == after.NumGoroutine {
			after = m
			break
		}
		after = m
	}
	if err != nil {
		return nil, err
	}
	n := float64(cfg.idleConns)
	note("idle %s: %.2f goroutines, %.0f B heap, %.0f B stack per connection", ch.name,
		float64(after.NumGoroutine-before.NumGoroutine)/n,
		(float64(after.HeapInuse)-float64(before.HeapInuse))/n,
		(float64(after.StackInuse)-float64(before.StackInuse))/n)
	if profile {
		for _, prof := range []struct{ path, name string }{
			{"/debug/pprof/heap?gc=1", "idle-heap"},
			{"/debug/pprof/goroutine", "idle-goroutine"},
		} {
			if err := ch.saveProfile(prof.path, cfg.profiles, ch.name+"-"+prof.name+".pprof"); err != nil {
				note("idle %s: %s profile: %v", ch.name, prof.name, err)
			}
		}
	}
	grown := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
	return []float64{grown / n}, nil
}
