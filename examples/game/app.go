package main

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/examples/game/engine"
	"github.com/rtkit/rtkit/examples/game/snake"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
)

//go:embed web
var webFS embed.FS

// config is the app's configuration; zero fields take the defaults of
// newApp.
type config struct {
	Addr     string
	RedisURL string
	Prefix   string   // starts every Redis key; default "game:"
	Origins  []string // extra origins allowed to open WebSockets
	Node     string   // this process's name in leases; default host:pid:addr

	Rate          int           // ticks a second; default 30
	Grace         time.Duration // a disconnected player keeps its slot this long; default 20s
	AwayAfter     time.Duration // a silent player is shown away after this; default 2s
	ViewerTimeout time.Duration // a viewer that stops acknowledging gets no more deltas; default 3s
	LeaseTTL      time.Duration // a match's lease; renewed every third of it; default 6s
	InputRate     float64       // inputs a second per user; default 20
	Snake         snake.Options
	Seed          uint64 // fixed seed for every match (tests); 0: from the clock
}

// app is one node of the game: the hub, the lobby, the matches it runs,
// the leaderboard.
type app struct {
	cfg    config
	log    *slog.Logger
	node   string
	rdb    *redis.Client
	bp     rtkit.Backplane
	hub    *realtime.Hub
	events *sse.Broker
	cache  *cache.Cache
	lobby  lobby
	board  boardStore
	stats  stats
	limits limiter

	ctx    context.Context // ends with shutdown; runners and the sweeper live under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	run    map[string]*runner
}

func newApp(cfg config, log *slog.Logger) (*app, error) {
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&cfg.Grace, 20*time.Second)
	def(&cfg.AwayAfter, 2*time.Second)
	def(&cfg.ViewerTimeout, 3*time.Second)
	def(&cfg.LeaseTTL, 6*time.Second)
	if cfg.Rate <= 0 {
		cfg.Rate = 30
	}
	if cfg.InputRate <= 0 {
		cfg.InputRate = 20
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "game:"
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = host + ":" + strconv.Itoa(os.Getpid()) + ":" + cfg.Addr
	}
	a := &app{cfg: cfg, log: log, node: cfg.Node, run: map[string]*runner{}}
	a.limits.init(cfg.InputRate)
	var presence realtime.Presence
	var store cache.Store
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		a.rdb = redis.NewClient(opts)
		if a.bp, err = rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: a.rdb, Prefix: cfg.Prefix, Logger: log}); err != nil {
			return nil, err
		}
		if presence, err = realtime.NewRedisPresence(realtime.RedisPresenceOptions{Client: a.rdb, Prefix: cfg.Prefix}); err != nil {
			return nil, err
		}
		store = cache.NewRedisStore(a.rdb, cfg.Prefix+"cache:")
		a.lobby = &redisLobby{rdb: a.rdb, prefix: cfg.Prefix + "lobby:"}
		a.board = &redisBoard{rdb: a.rdb, prefix: cfg.Prefix + "board:"}
	} else {
		a.bp = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
		a.lobby = newMemoryLobby()
		a.board = &memoryBoard{}
	}
	a.hub = realtime.NewHub(realtime.Options{
		Backplane:      a.bp,
		Presence:       presence,
		Authenticate:   authenticate,
		Authorize:      authorize,
		OriginPatterns: cfg.Origins,
		// Acknowledgements (10 a second) and inputs (up to InputRate) fit
		// in the default 50 objects a second.
		Logger: log,
	})
	a.hub.HandleCall("game.join", a.callJoin)
	a.hub.HandleCall("game.input", a.callInput)
	a.hub.HandleCall("game.ack", a.callAck)
	a.hub.HandleCall("game.leave", a.callLeave)
	a.cache = cache.New(cache.Options{Store: store, TTL: time.Minute, Logger: log})
	a.events = sse.NewBroker(sse.Options{
		Backplane: a.bp,
		// The only stream is the leaderboard: never a user's inbox.
		Topics: func(*http.Request) ([]string, error) { return []string{boardTopic}, nil },
		Logger: log,
	})
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(1)
	go a.sweep()
	return a, nil
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.Handle("GET /ws", a.hub)
	mux.Handle("GET /rtkit.js", realtime.ClientHandler())
	mux.Handle("GET /events", a.events)
	mux.HandleFunc("GET /api/leaderboard", a.serveBoard)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// authenticate gives each browser tab its own player: the page makes a
// random token, keeps it in sessionStorage and sends it as ?token=. The
// user is a hash of it, so that the user names others see in presence
// cannot be used to take a player over.
func authenticate(r *http.Request) (realtime.Identity, error) {
	tok := r.URL.Query().Get("token")
	if len(tok) < 16 || len(tok) > 128 {
		return realtime.Identity{}, errors.New("game: a token of 16 to 128 characters is required")
	}
	sum := sha256.Sum256([]byte(tok))
	return realtime.Identity{User: "u" + hex.EncodeToString(sum[:8])}, nil
}

// authorize lets a connection join match rooms and its own viewer room,
// and call; nothing else (clients never publish: inputs are calls).
func authorize(_ context.Context, id realtime.Identity, act realtime.Action) error {
	switch act.Kind {
	case realtime.ActionCall:
		return nil
	case realtime.ActionJoin, realtime.ActionPresence:
		if act.Room == viewerRoom(id.User) || (len(act.Room) > 5 && act.Room[:5] == "game:") {
			return nil
		}
	}
	return &realtime.Error{Code: realtime.CodeForbidden, Message: "not allowed in this game"}
}

// adopt runs match here if no node does (its lease is free).
func (a *app) adopt(ctx context.Context, match string) {
	a.mu.Lock()
	running := a.run[match] != nil
	a.mu.Unlock()
	if running {
		return
	}
	ok, err := a.lobby.Acquire(ctx, match, a.node, a.cfg.LeaseTTL)
	if err != nil || !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.run[match] != nil {
		return
	}
	r := newRunner(a, match)
	sub, err := a.bp.Subscribe(ctx, controlTopic(match), rtkit.SubscribeOptions{}, r)
	if err != nil {
		a.log.Warn("match subscribe", "match", match, "err", err)
		_ = a.lobby.Release(ctx, match, a.node)
		return
	}
	r.sub = sub
	var rctx context.Context
	rctx, r.cancel = context.WithCancel(a.ctx)
	a.run[match] = r
	a.log.Info("running match", "match", match, "node", a.node)
	var inner sync.WaitGroup
	inner.Add(2)
	a.wg.Add(1)
	go func() {
		defer inner.Done()
		_ = engine.Run(rctx, a.cfg.Rate, r.tick)
		r.cancel()
	}()
	go func() {
		defer inner.Done()
		r.io(rctx)
	}()
	go func() {
		defer a.wg.Done()
		inner.Wait()
		_ = sub.Close()
		a.mu.Lock()
		delete(a.run, match)
		a.mu.Unlock()
		rel, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.lobby.Release(rel, match, a.node)
	}()
}

// runnerOf returns the runner of match on this node, or nil.
func (a *app) runnerOf(match string) *runner {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.run[match]
}

// running returns the matches this node runs.
func (a *app) running() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.run))
	for id := range a.run {
		out = append(out, id)
	}
	return out
}

// sweep adopts matches whose node is gone (their lease expired), every
// third of the lease.
func (a *app) sweep() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		ms, err := a.lobby.Matches(a.ctx)
		if err != nil {
			continue
		}
		for m := range ms {
			a.adopt(a.ctx, m)
		}
		a.limits.forget(time.Minute)
	}
}

// shutdown stops every match loop (their leases are released, so another
// node takes them over at once), then the hub, the SSE streams and the
// cache. It waits for every goroutine the app started.
func (a *app) shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(done)
	}()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	errs = append(errs, a.hub.Shutdown(ctx), a.events.Shutdown(ctx), a.cache.Shutdown(ctx), a.bp.Close())
	if a.rdb != nil {
		errs = append(errs, a.rdb.Close())
	}
	return errors.Join(errs...)
}

// stats are the node's counters, for the benchmarks.
type stats struct {
	ticks, skipped, refused, dropped, bytesOut atomic.Int64
	late                                       [lateBuckets]atomic.Int64 // tick lateness in 100 µs buckets
}

const lateBuckets = 1000 // the last one holds 99.9 ms and more

func (s *stats) observe(late time.Duration, skipped int) {
	s.ticks.Add(1)
	s.skipped.Add(int64(skipped))
	s.late[min(int(late/(100*time.Microsecond)), lateBuckets-1)].Add(1)
}

// reset zeroes the lateness histogram and the counters of ticks.
func (s *stats) reset() {
	for i := range s.late {
		s.late[i].Store(0)
	}
	s.ticks.Store(0)
	s.skipped.Store(0)
	s.dropped.Store(0)
}

// lateQuantile returns the q-quantile of tick lateness (to 100 µs, from
// above).
func (s *stats) lateQuantile(q float64) time.Duration {
	var total int64
	for i := range s.late {
		total += s.late[i].Load()
	}
	want, seen := int64(q*float64(total)), int64(0)
	for i := range s.late {
		if seen += s.late[i].Load(); seen > want {
			return time.Duration(i+1) * 100 * time.Microsecond
		}
	}
	return 0
}
