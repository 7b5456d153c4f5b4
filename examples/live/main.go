// Command live is a live dashboard over Server-Sent Events: a simulated shop
// takes orders, every order is streamed to the page as it happens, and a
// slow sales report is made fast with a cache. Practice 37 / exercise 3 of
// the course.
//
//	go run ./examples/live                   # then open http://127.0.0.1:8080
//	REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:8081 go run ./examples/live
//
// The environment:
//
//	ADDR          listen address (default 127.0.0.1:8080)
//	ORDER_EVERY   how often the simulated shop takes an order (default 500ms)
//	REPORT_COST   how long computing the report takes, like a slow SQL
//	              query (default 1s)
//	REDIS_URL     share the stream and the cache with every process on this
//	              Redis; unset: everything in this process's memory
//	REDIS_PREFIX  starts every Redis key (default "live:")
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/internal/uplot"
	"github.com/rtkit/rtkit/sse"
)

//go:embed index.html
var page []byte

type config struct {
	Addr, RedisURL, Prefix string
	Shop                   string        // names this process's shop in its orders
	Every                  time.Duration // between two orders
	ReportCost             time.Duration // how long one report computation takes
	ReportTTL              time.Duration // how long a computed report stays fresh in the cache
}

// order is one event of the stream.
type order struct {
	Seq     int64  `json:"seq"`     // 1, 2, 3... per shop: the page checks that none is missing
	Shop    string `json:"shop"`    // which process took it (seq starts again at 1 in a new one)
	Product string `json:"product"` // what was sold
	Cents   int64  `json:"cents"`   // for how much
	Time    int64  `json:"time"`    // when, Unix milliseconds
}

var products = []string{"coffee", "tea", "cake", "sandwich", "juice"}

type app struct {
	cfg      config
	broker   *sse.Broker
	cache    *cache.Cache
	mu       sync.Mutex
	orders   []order // the "database"
	computed atomic.Int64
	close    func()
}

func newApp(cfg config, log *slog.Logger) (*app, error) {
	var bp rtkit.Backplane = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	var store cache.Store = cache.NewMemoryStore(cache.MemoryOptions{})
	var rdb *redis.Client
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		rdb = redis.NewClient(opts)
		if bp, err = rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: rdb, Prefix: cfg.Prefix, Logger: log}); err != nil {
			return nil, err
		}
		store = cache.NewRedisStore(rdb, cfg.Prefix+"cache:")
	}
	return &app{
		cfg: cfg,
		// The backplane keeps each topic's last 1,000 events: what a
		// client that reconnects with Last-Event-ID gets back.
		broker: sse.NewBroker(sse.Options{Backplane: bp, Logger: log}),
		cache:  cache.New(cache.Options{Store: store, TTL: cfg.ReportTTL, Logger: log}),
		close: func() {
			_ = bp.Close()
			if rdb != nil {
				_ = rdb.Close()
			}
		},
	}, nil
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.Handle("GET /uplot/", http.StripPrefix("/uplot", uplot.Handler())) // the chart library
	mux.Handle("GET /events", a.broker)                                    // /events?topic=orders
	// The same report three ways: computed every time; cached as data with
	// cache.GetOrLoad; cached as an HTTP response (with ETag) by cache.Middleware.
	mux.Handle("GET /api/report/uncached", a.reportHandler("no-store"))
	mux.HandleFunc("GET /api/report", a.reportCached)
	maxAge := fmt.Sprintf("public, max-age=%d", int(a.cfg.ReportTTL.Seconds()))
	mux.Handle("GET /api/report/http", cache.Middleware(a.cache, cache.MiddlewareOptions{})(a.reportHandler(maxAge)))
	mux.HandleFunc("POST /api/report/forget", a.forget)
	mux.HandleFunc("GET /api/stats", a.stats)
	return mux
}

// simulate takes an order every cfg.Every until ctx ends.
func (a *app) simulate(ctx context.Context) {
	t := time.NewTicker(a.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = a.takeOrder(ctx)
		}
	}
}

// takeOrder stores a random order and streams it to every page.
func (a *app) takeOrder(ctx context.Context) error {
	a.mu.Lock()
	o := order{Seq: int64(len(a.orders) + 1), Shop: a.cfg.Shop, Product: products[rand.IntN(len(products))],
		Cents: 150 + rand.Int64N(1200), Time: time.Now().UnixMilli()}
	a.orders = append(a.orders, o)
	a.mu.Unlock()
	data, _ := json.Marshal(o)
	_, err := a.broker.Publish(ctx, "orders", sse.Event{Type: "order", Data: data})
	return err
}

type report struct {
	Orders     int              `json:"orders"`
	Cents      int64            `json:"cents"`
	ByProduct  map[string]int64 `json:"by_product"` // cents per product
	ComputedAt int64            `json:"computed_at"`
}

// computeReport is the expensive part: it sleeps cfg.ReportCost, like a
// slow aggregate query, then sums every order.
func (a *app) computeReport(ctx context.Context) (report, error) {
	a.computed.Add(1)
	select {
	case <-time.After(a.cfg.ReportCost):
	case <-ctx.Done():
		return report{}, ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r := report{Orders: len(a.orders), ByProduct: map[string]int64{}, ComputedAt: time.Now().UnixMilli()}
	for _, o := range a.orders {
		r.Cents += o.Cents
		r.ByProduct[o.Product] += o.Cents
	}
	return r, nil
}

// reportHandler computes the report on every request and says how its
// answer may be cached. Wrapped in cache.Middleware, a "public, max-age=5"
// response is kept that long and If-None-Match is answered with 304.
func (a *app) reportHandler(cacheControl string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep, err := a.computeReport(r.Context())
		w.Header().Set("Cache-Control", cacheControl)
		writeJSON(w, rep, err)
	}
}

// reportCached computes the report at most once per TTL, however many
// requests ask at the same time: concurrent callers share one computation.
func (a *app) reportCached(w http.ResponseWriter, r *http.Request) {
	rep, err := cache.GetOrLoad(r.Context(), a.cache, "report", a.computeReport)
	writeJSON(w, rep, err)
}

// forget drops the cached report, so that the next request is a cold miss.
func (a *app) forget(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]bool{"ok": true}, a.cache.Delete(r.Context(), "report"))
}

func (a *app) stats(w http.ResponseWriter, r *http.Request) {
	s := a.cache.Stats()
	hits := s.Hits + s.LocalHits
	ratio := 0.0
	if hits+s.Misses > 0 {
		ratio = float64(hits) / float64(hits+s.Misses)
	}
	writeJSON(w, map[string]any{"hits": hits, "misses": s.Misses, "shared_waits": s.SharedWaits,
		"hit_ratio": ratio, "computed": a.computed.Load(), "streams": a.broker.Stats().Streams}, nil)
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("live stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	cfg := config{Addr: envOr("ADDR", "127.0.0.1:8080"), RedisURL: os.Getenv("REDIS_URL"),
		Prefix: envOr("REDIS_PREFIX", "live:"), ReportTTL: 5 * time.Second}
	cfg.Shop = fmt.Sprintf("%s pid %d", cfg.Addr, os.Getpid())
	var err error
	if cfg.Every, err = time.ParseDuration(envOr("ORDER_EVERY", "500ms")); err != nil || cfg.Every <= 0 {
		return errors.New("ORDER_EVERY must be a positive duration, e.g. 500ms")
	}
	if cfg.ReportCost, err = time.ParseDuration(envOr("REPORT_COST", "1s")); err != nil || cfg.ReportCost < 0 {
		return errors.New("REPORT_COST must be a duration, e.g. 1s")
	}
	a, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go a.simulate(ctx)

	srv := &http.Server{Addr: cfg.Addr, Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("live listening", "url", "http://"+cfg.Addr, "redis", cfg.RedisURL != "")
	select {
	case err := <-errc: // could not listen
		return err
	case <-ctx.Done(): // Ctrl-C
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.broker.Shutdown(sctx) // ends the streams with a retry hint: pages come back by themselves
	_ = a.cache.Shutdown(sctx)
	return srv.Shutdown(sctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
