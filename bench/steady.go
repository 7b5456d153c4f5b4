package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The steady-rate and join workloads (issue 14): what a server costs at
// the moderate rates most applications run at, and what filling a large
// room costs.
//
//   - lat50: the latency workload at a fixed 50 payloads per second (not
//     -rate), with two more metrics over the same measured window:
//     server_cpu_us_per_delivery, the server child's CPU time (getrusage,
//     user + system) divided by the deliveries counted, and
//     wire_bytes_per_delivery, the bytes the child wrote to its sockets
//     (Linux /proc/PID/io wchar: frames, headers, replies and presence
//     events alike, less TCP/IP headers) divided by the same deliveries.
//   - lat50s (realtime only): lat50 with the server publishing: the
//     generator POSTs each payload to the child's /publish, whose handler
//     calls the server's own publish (rtkit's Hub.Publish, centrifuge's
//     Node.Publish, melody's Broadcast), so messages carry no sender, as
//     a live feed's or a notification's do; no member publishes.
//   - lat20 (sse only): the same at 20 payloads per second.
//   - join5k, join20k (realtime only): that many clients connect and join
//     one room, each reading from the moment its join is answered (as a
//     real client does); join_s is the wall time from the first dial to
//     the last join reply, dropped the members that then fail to receive
//     one message published to the room within 60 s (closed as slow
//     consumers, or lost). join20k runs the largest N up to 20,000 that
//     the process's file limit allows (see joinMembers) and reports it as
//     members. On a server's first run, each saves the server's heap
//     profile after the message (e.g. profiles/rtkit-join5k-heap.pprof).

// usage is what /debug/usage reports.
type usage struct {
	CPUMicros    int64
	WrittenBytes int64
}

func serveUsage(w http.ResponseWriter, _ *http.Request) { writeJSON(w, selfUsage()) }

// usage returns the child's CPU time and bytes written so far.
func (c *child) usage() (usage, error) {
	var u usage
	err := c.getJSON("/debug/usage", &u)
	return u, err
}

// The rates of the lat50 and lat20 (sse only) workloads.
const (
	lat50Rate = 50
	lat20Rate = 20
)

// lat50Run and lat20Run save the server's CPU profile of the measured
// window (e.g. profiles/sse-rtkit-lat50-cpu.pprof) on a server's first run.
func lat50Run(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	return latencyAt(cfg, ch, t, lat50Rate, profileKind(profile, "lat50-cpu"))
}

func lat50sRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	wt, ok := t.(wsTarget)
	if !ok {
		return nil, fmt.Errorf("lat50s: WebSocket servers only")
	}
	wt.serverPub = true
	return latencyAt(cfg, ch, wt, lat50Rate, profileKind(profile, "lat50s-cpu"))
}

func lat20Run(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	return latencyAt(cfg, ch, t, lat20Rate, profileKind(profile, "lat20-cpu"))
}

func profileKind(profile bool, kind string) string {
	if profile {
		return kind
	}
	return ""
}

func join5kRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	return joinRun(cfg, ch, t, 5000, profileKind(profile, "join5k-heap"))
}

func join20kRun(cfg config, ch *child, t target, profile bool) ([]float64, error) {
	n := joinMembers(20000)
	vals, err := joinRun(cfg, ch, t, n, profileKind(profile, "join20k-heap"))
	if err != nil {
		return nil, err
	}
	return append(vals, float64(n)), nil
}

// joinSlack is the descriptors a process keeps beside a join workload's
// sockets: the server's listener and its /debug connections, the
// generator's publisher, the runtime's poller and pipes, /proc files.
const joinSlack = 100

// joinMembers returns want, or fewer when RLIMIT_NOFILE's hard limit
// (which both the generator and the server child raise their limit to,
// each holding one socket per member) leaves less than joinSlack
// descriptors beside want sockets. A machine whose hard limit is 20,000
// (no CAP_SYS_RESOURCE to raise it) runs join20k with 19,900 members.
func joinMembers(want int) int {
	limit, ok := fileLimit()
	if !ok || limit >= uint64(want+joinSlack) {
		return want
	}
	if limit <= joinSlack {
		return 1
	}
	return int(limit) - joinSlack
}

// joinRun fills a room of n members and publishes one message to it.
// With a profile name, it then saves the server's heap profile (after a
// GC) under that name.
func joinRun(cfg config, ch *child, t target, n int, profile string) ([]float64, error) {
	wt, ok := t.(wsTarget)
	if !ok {
		return nil, fmt.Errorf("join: WebSocket servers only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	r, err := newLiveRoom(ctx, wt.url, wt.p, n)
	if err != nil {
		return nil, err
	}
	defer r.close()
	took := time.Since(start)
	if err := r.publish(ctx); err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	want := int64(n)
	for deadline := time.Now().Add(60 * time.Second); r.delivered() < want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	dropped := want - r.delivered()
	noteTroubles("join", ch)
	if nerr, rerr := r.readErrors(); nerr > 0 {
		note("join %s: %d connections failed, first: %v", ch.name, nerr, rerr)
	}
	if m, err := ch.mem(); err == nil {
		note("join %s: %d members in %s; heap in use %d MB after (live objects %d MB), %d goroutines",
			ch.name, n, took.Round(time.Millisecond), m.HeapInuse>>20, m.HeapAlloc>>20, m.NumGoroutine)
	}
	if profile != "" && cfg.profiles != "" {
		if err := ch.saveProfile("/debug/pprof/heap?gc=1", cfg.profiles, profileName(ch, profile)); err != nil {
			note("join %s: heap profile: %v", ch.name, err)
		}
	}
	return []float64{took.Seconds(), float64(dropped)}, nil
}

// newLiveRoom is newRoom with each subscriber's reader started as soon as
// its join is answered, so that the events of the joins that follow are
// read as they come.
func newLiveRoom(ctx context.Context, url string, p *protocol, n int) (*room, error) {
	const parallel = 32
	r := &room{tally: newTally(n), p: p, subs: make([]*wsClient, n)}
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range parallel {
		wg.Go(func() {
			for i := range next {
				c, err := dial(ctx, url, p, true)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				mu.Lock()
				r.subs[i] = c
				mu.Unlock()
				r.wg.Add(1)
				go r.read(c, r.sinks[i])
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		r.close()
		return nil, firstErr
	}
	var err error
	r.pub, err = dial(ctx, url, p, true)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	r.wg.Add(1)
	go r.drainPublisher()
	return r, nil
}
