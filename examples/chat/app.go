package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
)

//go:embed web
var webFS embed.FS

// app wires the pieces: a backplane and presence (memory, or Redis with
// REDIS_URL), the hub, and the HTTP routes.
type app struct {
	cfg    config
	log    *slog.Logger
	node   string
	redis  *redis.Client // nil in memory mode
	bp     rtkit.Backplane
	hub    *realtime.Hub
	events *sse.Broker
	cache  *cache.Cache
	users  *userDB

	stop context.CancelFunc // ends the app's own goroutines
	wg   sync.WaitGroup
}

func newApp(cfg config, log *slog.Logger) (*app, error) {
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 2 * time.Second
	}
	a := &app{cfg: cfg, log: log, node: nodeName(cfg.Addr), users: newUserDB()}
	var presence realtime.Presence
	var store cache.Store
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		a.redis = redis.NewClient(opts)
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: a.redis, Prefix: cfg.Prefix, Logger: log, TopicHistory: topicHistory})
		if err != nil {
			return nil, err
		}
		a.bp = bp
		if presence, err = realtime.NewRedisPresence(realtime.RedisPresenceOptions{Client: a.redis, Prefix: cfg.Prefix}); err != nil {
			return nil, err
		}
		store = cache.NewRedisStore(a.redis, cfg.Prefix+"cache:")
	} else {
		a.bp = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{TopicHistory: topicHistory})
	}
	a.hub = realtime.NewHub(realtime.Options{
		Backplane:      a.bp,
		Presence:       presence,
		Authenticate:   a.authenticate,
		Authorize:      a.authorize,
		OriginPatterns: cfg.Origins,
		Logger:         log,
	})
	a.hub.HandleCall("rooms.list", a.listRooms)
	a.hub.HandleCall("user.profile", a.userProfile)
	a.cache = cache.New(cache.Options{
		Store:  store,
		Local:  &cache.LocalOptions{Backplane: a.bp, Topic: "chat-cache-invalidations"},
		Logger: log,
	})
	a.events = sse.NewBroker(sse.Options{
		Backplane: a.bp,
		Topics:    a.dashboardTopics,
		Authorize: a.authorizeDashboard,
		Expires:   a.tokenExpiry,
		Logger:    log,
	})
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Go(func() { a.publishStats(ctx) })
	return a, nil
}

// topicHistory keeps 500 messages per room and the last 10 minutes of
// dashboard stats.
func topicHistory(topic string) (int, time.Duration) {
	if topic == statsTopic {
		return 600, 10 * time.Minute
	}
	return 500, 24 * time.Hour
}

func (a *app) tokenExpiry(r *http.Request) time.Time {
	return tokenExpiry(r.URL.Query().Get("token"))
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.Handle("GET /", securityHeaders(files))
	mux.Handle("GET /rtkit.js", realtime.ClientHandler())
	mux.Handle("GET /ws", a.hub)
	mux.Handle("GET /events", a.events)
	mux.HandleFunc("POST /api/login", a.login)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.ready)
	return mux
}

// securityHeaders keeps the page to its own scripts and connections.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func (a *app) shutdown(ctx context.Context) error {
	a.stop()
	a.wg.Wait()
	err := errors.Join(a.hub.Shutdown(ctx), a.events.Shutdown(ctx), a.cache.Shutdown(ctx))
	_ = a.bp.Close()
	if a.redis != nil {
		_ = a.redis.Close()
	}
	return err
}

// login hands out a signed session token for a chosen name.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&req); err != nil {
		http.Error(w, "send JSON {\"name\": ...}", http.StatusBadRequest)
		return
	}
	if !validName.MatchString(req.Name) {
		http.Error(w, "a name is 1 to 32 letters, digits, _ or -", http.StatusBadRequest)
		return
	}
	a.users.seen(req.Name)
	writeJSON(w, map[string]string{"name": req.Name, "token": signToken(a.cfg.Secret, req.Name, time.Now())})
}

func (a *app) authenticate(r *http.Request) (realtime.Identity, error) {
	name, err := verifyToken(a.cfg.Secret, r.URL.Query().Get("token"), time.Now())
	if err != nil {
		return realtime.Identity{}, err
	}
	return realtime.Identity{User: name}, nil
}

// authorize allows the configured rooms only, and no direct messages:
// names are not passwords in this version, so inboxes are not private.
func (a *app) authorize(ctx context.Context, id realtime.Identity, act realtime.Action) error {
	switch act.Kind {
	case realtime.ActionDirect:
		return &realtime.Error{Code: realtime.CodeForbidden, Message: "direct messages are off in this version"}
	case realtime.ActionJoin, realtime.ActionPublish, realtime.ActionPresence:
		if !slices.Contains(a.cfg.Rooms, act.Room) {
			return &realtime.Error{Code: realtime.CodeForbidden, Message: "no such room"}
		}
	}
	return nil
}

type roomInfo struct {
	Name   string `json:"name"`
	Online int    `json:"online"`
}

// listRooms answers from the cache: every page asks on every presence
// change, and a couple of seconds of staleness is fine for counts.
func (a *app) listRooms(ctx context.Context, c *realtime.Call) (any, error) {
	return cache.GetOrLoad(ctx, a.cache, "rooms", a.loadRooms, cache.TTL(2*time.Second))
}

func (a *app) loadRooms(ctx context.Context) ([]roomInfo, error) {
	out := make([]roomInfo, 0, len(a.cfg.Rooms))
	for _, name := range a.cfg.Rooms {
		members, err := a.hub.Presence(ctx, name)
		if err != nil {
			return nil, err
		}
		users := map[string]bool{}
		for _, m := range members {
			users[m.User] = true
		}
		out = append(out, roomInfo{Name: name, Online: len(users)})
	}
	return out, nil
}

func (a *app) ready(w http.ResponseWriter, r *http.Request) {
	if a.redis != nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := a.redis.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		return
	}
}
