package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/tasks"
)

// shutdownTimeout bounds a shutdown after SIGTERM or SIGINT (see drain).
// Container runtimes must wait longer before they kill: compose.yaml's
// stop_grace_period is 30s.
const shutdownTimeout = 20 * time.Second

// ops is what runs the app as a service: metrics, request logs, and
// readiness that turns false when a shutdown begins.
type ops struct {
	a        *app
	log      *slog.Logger
	metrics  *metrics
	draining atomic.Bool
	sub      *rtkit.Subscription // the runner's events, for the task metrics
}

// newOps adds the operations to a: the task metrics subscribe to its
// runner's events until close.
func newOps(a *app, log *slog.Logger) (*ops, error) {
	o := &ops{a: a, log: log, metrics: newMetrics(a)}
	sub, err := a.tasks.Subscribe(context.Background(), func(e tasks.Event) {
		if e.Node == a.node {
			o.metrics.taskEvent(e)
		}
	})
	if err != nil {
		return nil, err
	}
	o.sub = sub
	return o, nil
}

// close ends the task metrics' subscription.
func (o *ops) close() { o.sub.Close() }

// handler is the app's handler with /metrics, a /readyz that answers 503
// once the shutdown began, and every request timed and logged.
func (o *ops) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}))
	app := o.a.handler()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		app.ServeHTTP(w, r)
	})
	mux.Handle("/", app)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		w.Header().Set(requestIDHeader, id)
		rec := &recorder{ResponseWriter: w, upgrade: strings.EqualFold(r.Header.Get("Upgrade"), "websocket")}
		// Each ServeMux sets the pattern on the request it is given, and
		// this one hands r itself to the app's: the route is known after.
		mux.ServeHTTP(rec, r)
		end := time.Now()
		if !rec.streamed.IsZero() {
			end = rec.streamed
		}
		o.metrics.requests.WithLabelValues(routeLabel(r), methodLabel(r.Method), strconv.Itoa(rec.status())).Observe(end.Sub(start).Seconds())
		logRequest(o.log, r, rec, id, time.Since(start))
	})
}

// drain shuts the app down after a signal, within ctx (shutdownTimeout):
//
//  1. /readyz answers 503, so load balancers stop sending new clients;
//  2. the server stops accepting connections, and idle ones close;
//  3. WebSockets close with 1001 (going away) and SSE streams end with a
//     retry hint: their clients reconnect, through the load balancer, to
//     another replica;
//  4. the task runner gives running tasks up to 5s to finish and hands
//     the others back to the store (another replica, or this one's next
//     start with Redis, runs them again);
//  5. the cache, the stores and the backplane close.
//
// A step that ctx cuts short is an error (the exit status is then 1).
func (o *ops) drain(ctx context.Context, srv *http.Server) error {
	o.draining.Store(true)
	served := make(chan error, 1)
	go func() { served <- srv.Shutdown(ctx) }()
	err := errors.Join(o.a.hub.Shutdown(ctx), o.a.events.Shutdown(ctx))
	err = errors.Join(err, o.a.shutdown(ctx))
	o.close()
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// methodLabel is the method, or "other" for one the app has no route for
// (any string may come in: a label must stay a small set).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
