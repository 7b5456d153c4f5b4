package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rtkit/rtkit/realtime"
)

// The load benchmarks run real matches at 30 Hz for a fixed time, with
// 8 bot players each over real WebSockets (Go clients in the same process:
// the machine's cores serve both sides). Run them with one iteration:
//
//	go test -run XX -bench 'Load' -benchtime 1x ./examples/game
//
// Reported: tick lateness p50/p99 (how long after its due time a tick
// started), the process's CPU (in cores, clients included), bytes a second
// per player (payloads published to each player) and dropped deltas.

const loadWindow = 5 * time.Second

func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1, 10, 25, 50, 75, 100} {
		b.Run(fmt.Sprintf("matches=%d", n), func(b *testing.B) {
			for range b.N {
				runLoad(b, n)
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bot plays like a page: acknowledges every 100 ms, turns now and then,
// and reads everything it is sent.
func bot(ctx context.Context, b *testing.B, base string, i int, wg *sync.WaitGroup, joined chan<- struct{}) {
	defer wg.Done()
	tok := fmt.Sprintf("bench-bot-token-%06d", i)
	c, err := realtime.Dial(ctx, base+"/ws?token="+tok, realtime.DialOptions{Logger: slog.New(slog.DiscardHandler), EventBuffer: 1024})
	if err != nil {
		b.Error(err)
		joined <- struct{}{}
		return
	}
	defer c.Close()
	user := userOf(tok)
	var s seat
	if _, err := c.Join(ctx, viewerRoom(user), realtime.JoinOptions{}); err != nil {
		b.Error(err)
	}
	if err := c.Call(ctx, "game.join", map[string]string{"name": fmt.Sprint("bot", i)}, &s); err != nil {
		b.Error(err)
	}
	joined <- struct{}{}
	var newest atomic.Uint64
	go func() {
		for e := range c.Events() {
			if len(e.Data) > 20 {
				var t uint64
				_, _ = fmt.Sscanf(string(e.Data[len(`{"m":"`)+len(s.Match)+len(`","d":{"t":`):]), "%d", &t)
				newest.Store(t)
			}
		}
	}()
	r := rand.New(rand.NewPCG(uint64(i), 1))
	ack := time.NewTicker(100 * time.Millisecond)
	defer ack.Stop()
	seq := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ack.C:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = c.Call(cctx, "game.ack", ackReq{Match: s.Match, Tick: newest.Load()}, nil)
		if r.IntN(5) == 0 {
			seq++
			_ = c.Call(cctx, "game.input", map[string]any{"m": s.Match, "p": s.Slot, "s": seq, "d": r.IntN(4)}, nil)
		}
		cancel()
	}
}

func runLoad(b *testing.B, matches int) {
	cfg := testConfig()
	cfg.Snake.Duration = 100000 // one long round
	cfg.Seed = 0
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(a.handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	players := matches * 8
	joined := make(chan struct{}, players)
	for i := range players {
		wg.Add(1)
		go bot(ctx, b, srv.URL, i, &wg, joined)
		<-joined // one at a time, so that matches fill in order
	}
	time.Sleep(time.Second) // warm up
	a.stats.reset()
	bytes0, cpu0, t0 := a.stats.bytesOut.Load(), cpuTime(), time.Now()
	time.Sleep(loadWindow)
	el := time.Since(t0).Seconds()
	cpu := (cpuTime() - cpu0).Seconds() / el
	bytes := float64(a.stats.bytesOut.Load()-bytes0) / el / float64(players)
	b.ReportMetric(float64(a.stats.lateQuantile(0.5).Microseconds())/1000, "p50-late-ms")
	b.ReportMetric(float64(a.stats.lateQuantile(0.99).Microseconds())/1000, "p99-late-ms")
	b.ReportMetric(cpu, "cores")
	b.ReportMetric(bytes, "B/s/player")
	b.ReportMetric(float64(a.stats.dropped.Load()), "dropped")
	b.ReportMetric(float64(len(a.running())), "running")
	cancel()
	wg.Wait()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := a.shutdown(sctx); err != nil {
		b.Error(err)
	}
}
