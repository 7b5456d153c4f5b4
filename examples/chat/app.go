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
	"net/mail"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

//go:embed web
var webFS embed.FS

// app wires the pieces: a backplane, presence and a task store (memory,
// or Redis with REDIS_URL), the hub, the task runner and its mailer, and
// the HTTP routes.
type app struct {
	cfg       config
	log       *slog.Logger
	node      string
	redis     *redis.Client // nil in memory mode
	bp        rtkit.Backplane
	hub       *realtime.Hub
	events    *sse.Broker
	cache     *cache.Cache
	users     *userDB
	taskStore tasks.Store
	tasks     *tasks.Runner
	from      *mail.Address
	mailer    mailer
	mentions  *mentionFeed

	stop context.CancelFunc // ends the app's own goroutines
	wg   sync.WaitGroup     // the stats publisher, the mention worker and the task runner
}

func newApp(cfg config, log *slog.Logger) (*app, error) {
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 2 * time.Second
	}
	if cfg.SMTPFrom == "" {
		cfg.SMTPFrom = "chat@localhost"
	}
	if cfg.MailAttempts <= 0 {
		cfg.MailAttempts = defaultMailAttempts
	}
	if cfg.MailRetry == (tasks.Backoff{}) {
		cfg.MailRetry = defaultMailRetry
	}
	from, err := mail.ParseAddress(cfg.SMTPFrom)
	if err != nil {
		return nil, fmt.Errorf("SMTP_FROM: %w", err)
	}
	a := &app{cfg: cfg, log: log, node: nodeName(cfg.Addr), users: newUserDB(), from: from,
		mentions: newMentionFeed(cfg.Rooms, log)}
	var presence realtime.Presence
	var store cache.Store
	var taskStore tasks.Store = tasks.NewMemoryStore(tasks.MemoryOptions{})
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
		if taskStore, err = tasks.NewRedisStore(tasks.RedisOptions{Client: a.redis, Prefix: cfg.Prefix + "tasks:", Logger: log}); err != nil {
			return nil, err
		}
	} else {
		a.bp = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{TopicHistory: topicHistory})
	}
	a.hub = realtime.NewHub(realtime.Options{
		Backplane:      a.bp,
		Presence:       presence,
		Authenticate:   a.authenticate,
		Authorize:      a.authorize,
		OnConnect:      func(c realtime.ConnInfo) { a.mentions.connected(a.bp, c) },
		OnDisconnect:   a.mentions.disconnected,
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
	a.taskStore = taskStore
	// The app's backplane carries the runner's events to every replica's
	// dashboard, and cancellations to the replica running a task.
	a.tasks = tasks.NewRunner(tasks.Options{Store: taskStore, Backplane: a.bp, EventsTopic: tasksTopic, Logger: log, ShutdownTimeout: 5 * time.Second})
	a.mailer = newMailer(cfg, from, a.bp, log)
	tasks.Handle(a.tasks, mailTask, a.sendMail)

	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Go(func() { a.publishStats(ctx) })
	a.wg.Go(func() { a.notifyMentions(ctx) })
	a.wg.Go(func() {
		if err := a.tasks.Run(ctx); err != nil {
			log.Error("task runner", "err", err)
		}
	})
	return a, nil
}

// topicHistory keeps 500 messages per room (and task events), the last 10
// minutes of dashboard stats and the outbox's last 100 mails.
func topicHistory(topic string) (int, time.Duration) {
	switch topic {
	case statsTopic:
		return 600, 10 * time.Minute
	case outboxTopic:
		return outboxSize, 7 * 24 * time.Hour
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
	mux.Handle("GET /outbox", securityHeaders(http.HandlerFunc(a.outboxPage)))
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

// shutdown closes the WebSockets first (no new messages), then ends the
// app's goroutines: the task runner drains, giving running tasks up to
// its ShutdownTimeout and handing back the rest (another replica, or the
// next start with Redis, runs them). Then the streams, the cache, the
// stores and the backplane close.
func (a *app) shutdown(ctx context.Context) error {
	herr := a.hub.Shutdown(ctx)
	a.stop()
	a.wg.Wait()
	a.mentions.close()
	err := errors.Join(herr, a.events.Shutdown(ctx), a.cache.Shutdown(ctx), a.taskStore.Close())
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
