package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit/examples/game/engine"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv("GAME_BENCH_BOTS"); spec != "" {
		botsMain(spec)
	}
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// testConfig is a fast game: a one-second countdown and ten-second
// rounds, with a fixed seed.
func testConfig() config {
	cfg := config{Addr: "127.0.0.1:0", Seed: 1}
	cfg.Snake.Countdown = 30
	cfg.Snake.Duration = 300
	cfg.Snake.EndPause = 30
	return cfg
}

// startApp runs an app on a loopback server until the test ends.
func startApp(t *testing.T, cfg config) (*app, string) {
	t.Helper()
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(a.handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.shutdown(ctx))
		srv.Close()
	})
	return a, srv.URL
}

// gamer is a Go client playing the game the way the page does: it joins
// its viewer room, takes a seat, rebuilds every snapshot from the deltas
// it receives and acknowledges the newest one it holds.
type gamer struct {
	t     *testing.T
	token string
	user  string
	c     *realtime.Client
	seat  seat

	mu     sync.Mutex
	held   map[uint64]*engine.Snapshot
	newest uint64
	states map[uint64]string // tick → encoded snapshot
	seq    uint32
	resets int // full snapshots older than the newest held: a new runner
	stop   chan struct{}
	done   sync.WaitGroup
}

func userOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "u" + hex.EncodeToString(sum[:8])
}

// join connects a player with token (its identity) to base and seats it.
func join(t *testing.T, base, token, name string) *gamer {
	t.Helper()
	p := &gamer{t: t, token: token, user: userOf(token), held: map[uint64]*engine.Snapshot{}, states: map[uint64]string{}}
	p.connect(base, name)
	t.Cleanup(p.close)
	return p
}

func (p *gamer) connect(base, name string) {
	t := p.t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := realtime.Dial(ctx, base+"/ws?token="+p.token, realtime.DialOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	p.c = c
	_, err = c.Join(ctx, viewerRoom(p.user), realtime.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Call(ctx, "game.join", map[string]any{"name": name}, &p.seat))
	p.stop = make(chan struct{})
	p.done.Add(2)
	go p.read()
	go p.ack()
}

func (p *gamer) read() {
	defer p.done.Done()
	for {
		select {
		case <-p.stop:
			return
		case e, ok := <-p.c.Events():
			if !ok {
				return
			}
			if e.Op != "msg" || e.Room != viewerRoom(p.user) {
				continue
			}
			var w struct {
				M string          `json:"m"`
				D json.RawMessage `json:"d"`
			}
			if json.Unmarshal(e.Data, &w) != nil || w.M != p.seat.Match {
				continue
			}
			d, err := engine.DecodeDelta(w.D)
			if err != nil {
				p.t.Errorf("bad delta: %v", err)
				continue
			}
			p.mu.Lock()
			if d.Base == 0 && d.Tick < p.newest {
				// The match restarted on another node: start over.
				p.held, p.newest, p.seq = map[uint64]*engine.Snapshot{}, 0, 0
				p.resets++
			}
			s, err := p.held[d.Base].Apply(d)
			if err == nil {
				b, _ := s.MarshalJSON()
				p.held[d.Tick], p.states[d.Tick] = s, string(b)
				p.newest = max(p.newest, d.Tick)
				delete(p.held, d.Tick-100)
			}
			p.mu.Unlock()
		}
	}
}

// ack acknowledges the newest snapshot every 50 ms, like the page.
func (p *gamer) ack() {
	defer p.done.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		tick := p.newest
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.c.Call(ctx, "game.ack", ackReq{Match: p.seat.Match, Tick: tick}, nil)
		cancel()
	}
}

// disconnect drops the connection without leaving the match.
func (p *gamer) disconnect() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	_ = p.c.Close()
	p.done.Wait()
	p.stop = nil
}

func (p *gamer) close() { p.disconnect() }

// input sends a turn for slot (normally its own) and returns the call's
// error code ("" when accepted).
func (p *gamer) input(slot int, dir int, extra map[string]any) string {
	p.mu.Lock()
	p.seq++
	req := map[string]any{"m": p.seat.Match, "p": slot, "s": p.seq, "d": dir}
	p.mu.Unlock()
	for k, v := range extra {
		req[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.c.Call(ctx, "game.input", req, nil)
	var re *realtime.Error
	if errors.As(err, &re) {
		return re.Code
	}
	require.NoError(p.t, err)
	return ""
}

// latest returns the newest snapshot the player holds.
func (p *gamer) latest() *engine.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[p.newest]
}

// snakeOf decodes a player's entities from the player's newest snapshot.
func (p *gamer) snakeOf(slot int) (s struct {
	H []int
	N string
	A bool
	D int
	W bool
	S int
}, ok bool) {
	snap := p.latest()
	if snap == nil {
		return s, false
	}
	body, card := snap.Get("p"+string(rune('0'+slot))), snap.Get("s"+string(rune('0'+slot)))
	if body == nil || card == nil {
		return s, false
	}
	require.NoError(p.t, json.Unmarshal(body, &s))
	require.NoError(p.t, json.Unmarshal(card, &s))
	s.A = s.H != nil
	return s, true
}

func (p *gamer) ackOf(slot int) uint32 {
	snap := p.latest()
	if snap == nil {
		return 0
	}
	var acks map[string]uint32
	_ = json.Unmarshal(snap.Get(engine.AcksEntity), &acks)
	return acks[string(rune('0'+slot))]
}

func (p *gamer) restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resets
}

func (p *gamer) snapshots() map[uint64]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint64]string, len(p.states))
	for k, v := range p.states {
		out[k] = v
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 20*time.Millisecond, what)
}
