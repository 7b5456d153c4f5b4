package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
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
// per player (payloads published to each player) and dropped deltas. The
// bots run in a child process: the two processes share the machine's
// cores, as a server and its clients on one box would.

const loadWindow = 5 * time.Second

// botsMain runs the bots of a load benchmark when the test binary is
// started with GAME_BENCH_BOTS="<url> <n>": it seats them one by one,
// prints "ready", and plays until its stdin closes; it reports bots that
// lost their connection on stderr.
func botsMain(spec string) {
	var base string
	var n int
	if _, err := fmt.Sscan(spec, &base, &n); err != nil {
		fmt.Fprintln(os.Stderr, "GAME_BENCH_BOTS:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var lost atomic.Int64
	joined := make(chan struct{}, n)
	fail := func(args ...any) { fmt.Fprintln(os.Stderr, args...) }
	for i := range n {
		wg.Add(1)
		go bot(ctx, fail, base, i, &wg, joined, &lost)
		<-joined // one at a time, so that matches fill in order
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	if l := lost.Load(); l > 0 {
		fmt.Fprintf(os.Stderr, "bots: %d of %d lost their connection\n", l, n)
	}
	os.Exit(0)
}

func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1, 5, 10, 20, 40} {
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
func bot(ctx context.Context, fail func(...any), base string, i int, wg *sync.WaitGroup, joined chan<- struct{}, lost *atomic.Int64) {
	defer wg.Done()
	tok := fmt.Sprintf("bench-bot-token-%06d", i)
	c, err := realtime.Dial(ctx, base+"/ws?token="+tok, realtime.DialOptions{Logger: slog.New(slog.DiscardHandler), EventBuffer: 1024,
		// A bot that loses its connection stops (counted): reconnecting
		// would hide overload, and a Client closed while it rejoins can
		// panic (see the report on realtime.Client.rejoin).
		NoReconnect: true})
	if err != nil {
		fail(err)
		joined <- struct{}{}
		return
	}
	defer c.Close()
	user := userOf(tok)
	var s seat
	if _, err := c.Join(ctx, viewerRoom(user), realtime.JoinOptions{}); err != nil {
		fail(err)
	}
	if err := c.Call(ctx, "game.join", map[string]string{"name": fmt.Sprint("bot", i)}, &s); err != nil {
		fail(err)
	}
	joined <- struct{}{}
	var newest atomic.Uint64
	go func() {
		for e := range c.Events() {
			if e.Op == "disconnected" {
				if lost.Add(1) <= 3 {
					fail("bot disconnected:", e.Err)
				}
			}
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
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
	players := matches * 8
	// The bots run in a child process (this test binary again, see
	// botsMain), so that the server's lateness is the server's.
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("GAME_BENCH_BOTS=%s %d", srv.URL, players))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("bots: %q %v", line, err)
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
	b.ReportMetric(cpu, "server-cores")
	b.ReportMetric(bytes, "B/s/player")
	b.ReportMetric(float64(a.stats.dropped.Load()), "dropped")
	b.ReportMetric(float64(len(a.running())), "running")
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Error("bots:", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := a.shutdown(sctx); err != nil {
		b.Error(err)
	}
}
