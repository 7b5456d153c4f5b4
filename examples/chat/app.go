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
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/internal/uplot"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
	"github.com/rtkit/rtkit/tasks/inspect"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

//go:embed web
var webFS embed.FS

// app is the whole chat, built from a config by newApp (the one place
// that wires the pieces): the records (memory, or Redis with REDIS_URL),
// a backplane and presence, the hub, the SSE broker, the cache, the task
// runner and its mailer, and the HTTP routes (handler).
type app struct {
	cfg       config
	log       *slog.Logger
	node      string
	redis     *redis.Client // nil in memory mode
	store     store
	bp        rtkit.Backplane
	hub       *realtime.Hub
	events    *sse.Broker
	inspector *inspect.Inspector // the task inspector at /admin/tasks/
	cache     *cache.Cache
	taskStore tasks.Store
	tasks     *tasks.Runner
	from      *mail.Address
	mailer    mailer
	limiter   *ipLimiter
	dummyHash []byte // a bcrypt hash of the configured cost, for unknown handles

	stop context.CancelFunc // ends the app's own goroutines
	wg   sync.WaitGroup     // the stats publisher, the task feed and the task runner
}

// withDefaults fills in what a config built in code (tests) leaves out.
func (cfg config) withDefaults() config {
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
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.History <= 0 {
		cfg.History = 10000
	}
	if cfg.MailBatch <= 0 {
		cfg.MailBatch = 2 * time.Minute
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.AuthRate == 0 {
		cfg.AuthRate, cfg.AuthBurst = rate.Every(6*time.Second), 10
	}
	if cfg.PublicURL == "" {
		port := cfg.Addr[strings.LastIndexByte(cfg.Addr, ':')+1:]
		cfg.PublicURL = "http://localhost:" + port
	}
	return cfg
}

// newApp builds the app. With REDIS_URL it first checks that Redis
// answers: a wrong URL or an unreachable server is an error here, not a
// server that starts and logs warnings forever.
func newApp(cfg config, log *slog.Logger) (*app, error) {
	cfg = cfg.withDefaults()
	from, err := mail.ParseAddress(cfg.SMTPFrom)
	if err != nil {
		return nil, fmt.Errorf("SMTP_FROM: %w", err)
	}
	a := &app{cfg: cfg, log: log, node: nodeName(cfg.Addr), from: from, limiter: newIPLimiter(cfg.AuthRate, cfg.AuthBurst)}
	if a.dummyHash, err = bcrypt.GenerateFromPassword([]byte("not anyone's password"), cfg.BcryptCost); err != nil {
		return nil, fmt.Errorf("bcrypt cost %d: %w", cfg.BcryptCost, err)
	}
	var presence realtime.Presence
	var cacheStore cache.Store
	a.taskStore = tasks.NewMemoryStore(tasks.MemoryOptions{})
	if cfg.RedisURL != "" {
		if err := a.openRedis(&presence, &cacheStore); err != nil {
			if a.redis != nil {
				_ = a.redis.Close()
			}
			return nil, err
		}
	} else {
		a.store = newMemStore()
		a.bp = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{TopicHistory: a.topicHistory})
	}
	a.hub = realtime.NewHub(realtime.Options{
		Backplane:      a.bp,
		Presence:       presence,
		Authenticate:   a.authenticate,
		Authorize:      a.authorize,
		OriginPatterns: cfg.Origins,
		MaxHistory:     pageSize,
		InboundRate:    cfg.HubRate,
		InboundBurst:   cfg.HubBurst,
		Logger:         log,
	})
	for name, fn := range map[string]realtime.CallHandler{
		"rooms.list": a.listRooms, "room.join": a.joinRoom, "room.leave": a.leaveRoom, "read": a.readRoom,
		"room.create": a.createRoom, "room.archive": a.archiveRoom, "room.members": a.roomMembers, "room.member": a.setMember,
		"send": a.send, "msg.edit": a.editMessage, "msg.delete": a.deleteMessage, "history": a.history,
		"dm.open": a.dmOpen, "dm.list": a.dmList, "users.list": a.usersList,
		"settings": a.settings, "admin.users": a.adminUsers, "admin.ban": a.ban, "admin.disconnect": a.disconnect,
	} {
		a.hub.HandleCall(name, fn)
	}
	a.cache = cache.New(cache.Options{
		Store:  cacheStore,
		Local:  &cache.LocalOptions{Backplane: a.bp, Topic: "sys:cache"},
		Logger: log,
	})
	a.events = sse.NewBroker(sse.Options{
		Backplane: a.bp,
		Topics:    a.streamTopics,
		Authorize: a.authorizeStream,
		Expires:   a.streamExpiry,
		MaxTopics: 100,
		Logger:    log,
	})
	// The backplane carries the runner's events to every replica, and
	// cancellations to the replica running a task. The runner's node name
	// is known, so that each replica relays its own runner's events to
	// the dashboard (taskfeed.go).
	a.tasks = tasks.NewRunner(tasks.Options{Store: a.taskStore, Backplane: a.bp, EventsTopic: tasksTopic, Node: a.node,
		Logger: log, ShutdownTimeout: 5 * time.Second})
	a.mailer = newMailer(cfg, from, a.bp, log)
	tasks.Handle(a.tasks, mailTask, a.sendMail)
	tasks.Handle(a.tasks, digestTask, a.sendDigest)
	a.inspector = a.newInspector(log)

	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	if err := a.seedRooms(ctx); err != nil {
		_ = a.shutdown(ctx)
		return nil, err
	}
	if err := a.startTaskFeed(ctx); err != nil {
		_ = a.shutdown(ctx)
		return nil, err
	}
	a.wg.Go(func() { a.publishStats(ctx) })
	a.wg.Go(func() {
		if err := a.tasks.Run(ctx); err != nil {
			log.Error("task runner", "err", err)
		}
	})
	return a, nil
}

// openRedis connects to REDIS_URL and makes the shared parts.
func (a *app) openRedis(presence *realtime.Presence, cacheStore *cache.Store) error {
	opts, err := redis.ParseURL(a.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL %q is not a Redis URL (e.g. redis://127.0.0.1:6379/0): %w", a.cfg.RedisURL, err)
	}
	a.redis = redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("REDIS_URL: Redis at %s does not answer: %w", opts.Addr, err)
	}
	p := a.cfg.Prefix
	a.store = &redisStore{rdb: a.redis, prefix: p + "db:"}
	if a.bp, err = rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: a.redis, Prefix: p, Logger: a.log, TopicHistory: a.topicHistory}); err != nil {
		return err
	}
	if *presence, err = realtime.NewRedisPresence(realtime.RedisPresenceOptions{Client: a.redis, Prefix: p}); err != nil {
		return err
	}
	*cacheStore = cache.NewRedisStore(a.redis, p+"cache:")
	a.taskStore, err = tasks.NewRedisStore(tasks.RedisOptions{Client: a.redis, Prefix: p + "tasks:", Logger: a.log})
	return err
}

// seedRooms creates the configured public rooms that do not exist yet.
func (a *app) seedRooms(ctx context.Context) error {
	for _, name := range a.cfg.Rooms {
		err := a.store.CreateRoom(ctx, room{Name: name, Created: time.Now().UTC()})
		if err != nil && !errors.Is(err, errTaken) {
			return fmt.Errorf("creating room %q: %w", name, err)
		}
	}
	return nil
}

// topicHistory keeps cfg.History messages a room or conversation, for a
// year; the last hour of dashboard stats; 200 task events; the outbox's
// last 100 mails; 100 notifications a user.
func (a *app) topicHistory(topic string) (int, time.Duration) {
	switch {
	case topic == statsTopic:
		return 3600, time.Hour
	case topic == taskFeedTopic || topic == tasksTopic:
		return 200, 24 * time.Hour
	case topic == outboxTopic:
		return outboxSize, 7 * 24 * time.Hour
	case strings.HasPrefix(topic, "user:"), strings.HasPrefix(topic, "sys:"):
		return 100, 24 * time.Hour
	}
	return a.cfg.History, 365 * 24 * time.Hour
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.Handle("GET /", securityHeaders(files))
	mux.Handle("GET /rtkit.js", realtime.ClientHandler())
	mux.Handle("GET /uplot/", http.StripPrefix("/uplot", uplot.Handler()))
	mux.Handle("GET /ws", expireConns(a.hub))
	mux.Handle("GET /events", a.eventsHandler())
	mux.Handle("GET /outbox", securityHeaders(http.HandlerFunc(a.outboxPage)))
	mux.Handle("GET /admin/tasks/", a.inspectorHandler()) // admins only (inspector.go)
	mux.Handle("POST /admin/tasks/", a.inspectorHandler())
	mux.HandleFunc("POST /api/register", a.register)
	mux.HandleFunc("POST /api/login", a.login)
	mux.HandleFunc("POST /api/logout", a.logout)
	mux.HandleFunc("POST /api/refresh", a.refresh)
	mux.HandleFunc("GET /api/session", a.sessionHandler)
	mux.HandleFunc("GET /api/dashboard", a.dashboardHistory)
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
	err := errors.Join(herr, a.events.Shutdown(ctx), a.inspector.Shutdown(ctx), a.cache.Shutdown(ctx), a.taskStore.Close())
	_ = a.bp.Close()
	if a.redis != nil {
		_ = a.redis.Close()
	}
	return err
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
	_ = json.NewEncoder(w).Encode(v)
}
