// Command email is practice 36 (exercise 2) of the course: an email
// processor on background tasks.
//
// POST /signup answers 202 at once and enqueues a "welcome.send" task; a
// worker sends the welcome mail over SMTP, retrying with backoff, and a
// task whose last attempt fails stays "dead" (the dead-letter list) until
// someone retries it. A periodic "digest.send" task mails a summary of the
// queue. /tasks shows every task's state, progress and log, live over SSE.
//
//	go run ./examples/email                                     # all in memory, mail logged
//	SMTP_ADDR=127.0.0.1:1025 go run ./examples/email            # mail through Mailpit
//	REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:8081 go run ./examples/email  # two processes
//
// README.md lists the environment variables.
package main

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
	"github.com/rtkit/rtkit/tasks/inspect"
)

//go:embed tasks.html
var page embed.FS

// signup is the "welcome.send" task's payload.
type signup struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// app holds what the handlers share: the task runner, the SSE broker that
// streams the runner's events, and the mailer.
type app struct {
	cfg    config
	log    *slog.Logger
	runner *tasks.Runner
	events *sse.Broker
	admin  *inspect.Inspector // the task inspector at /admin/tasks/
	send   mailer
	close  func() // closes the backplane and Redis, if any
}

func newApp(cfg config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, send: newMailer(cfg, log)}
	// The runner keeps tasks in a store and publishes their events on a
	// backplane; the SSE broker streams the same backplane to /tasks.
	var store tasks.Store
	var bp rtkit.Backplane
	if cfg.RedisURL == "" { // one process
		store, bp = tasks.NewMemoryStore(tasks.MemoryOptions{}), rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
		a.close = func() { _ = bp.Close() }
	} else { // several processes share tasks and events through Redis
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, err
		}
		rdb := redis.NewClient(opts)
		rbp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: rdb, Prefix: cfg.RedisPrefix, Logger: log})
		if err != nil {
			_ = rdb.Close()
			return nil, err
		}
		rstore, err := tasks.NewRedisStore(tasks.RedisOptions{Client: rdb, Prefix: cfg.RedisPrefix + "tasks:", Logger: log})
		if err != nil {
			_, _ = rbp.Close(), rdb.Close()
			return nil, err
		}
		store, bp = rstore, rbp
		a.close = func() { _, _, _ = rstore.Close(), rbp.Close(), rdb.Close() }
	}
	a.runner = tasks.NewRunner(tasks.Options{
		Store: store, Backplane: bp, Concurrency: cfg.Workers, Logger: log,
		Queues: map[string]int{"welcome": 3, "digest": 1}, // welcome mails get 3 of every 4 free workers
	})
	tasks.Handle(a.runner, "welcome.send", a.sendWelcome)
	tasks.Handle(a.runner, "digest.send", a.sendDigest)
	a.runner.Periodic("digest", tasks.Every(cfg.DigestEvery), "digest.send", nil, tasks.Queue("digest"), tasks.MaxAttempts(1))
	a.events = sse.NewBroker(sse.Options{
		Backplane: bp, Logger: log,
		Topics: func(*http.Request) ([]string, error) { return []string{"tasks"}, nil }, // the runner's events, nothing else
		// "tasks" is a topic the broker refuses unless Authorize allows it:
		// this demo shows its task events to everyone.
		Authorize: func(*http.Request, string) error { return nil },
	})
	// The library's task inspector: queues, lists, task pages, retry,
	// cancel, delete and pause, live. Without Authorize it is read-only;
	// this demo lets only requests from this machine act (a real app
	// checks its own login here, and puts the inspector behind it).
	a.admin = inspect.New(a.runner, inspect.Options{
		Prefix: "/admin/tasks", Logger: log,
		Authorize: func(r *http.Request, act inspect.Action) error {
			if act == inspect.ActionRead || fromLoopback(r) {
				return nil
			}
			return inspect.ErrForbidden
		},
	})
	return a, nil
}

// fromLoopback reports whether r comes from this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", a.signup)
	mux.HandleFunc("GET /api/tasks", a.listTasks)
	mux.HandleFunc("GET /api/tasks/{id}", a.getTask)
	mux.HandleFunc("POST /api/tasks/{id}/retry", a.retryTask)
	mux.Handle("GET /events", a.events)
	mux.HandleFunc("GET /tasks", func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, page, "tasks.html") })
	mux.Handle("/admin/tasks/", a.admin)
	mux.Handle("GET /{$}", http.RedirectHandler("/tasks", http.StatusFound))
	return mux
}

// signup enqueues the welcome mail and answers at once: the mail is sent
// by whichever worker takes the task, here or in another process.
func (a *app) signup(w http.ResponseWriter, r *http.Request) {
	var s signup
	if err := decodeJSON(r, &s); err != nil || !validAddress(s.Email) {
		http.Error(w, `want {"email": "ada@example.com", "name": "Ada"}`, http.StatusBadRequest)
		return
	}
	t, err := a.enqueueWelcome(r.Context(), s)
	if err != nil {
		a.log.Error("enqueue", "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"task": t.ID, "status": "/api/tasks/" + t.ID})
}

// enqueueWelcome enqueues the welcome mail: MAIL_ATTEMPTS attempts, the
// first retry MAIL_BACKOFF after a failure, then twice as long each time.
func (a *app) enqueueWelcome(ctx context.Context, s signup) (*tasks.Task, error) {
	return a.runner.Enqueue(ctx, "welcome.send", s, tasks.Queue("welcome"), tasks.Timeout(30*time.Second),
		tasks.MaxAttempts(a.cfg.Attempts), tasks.WithBackoff(tasks.Backoff{Initial: a.cfg.Backoff, Max: time.Hour, Factor: 2, Jitter: 0.2}))
}

// sendWelcome is the "welcome.send" handler. Returning an error retries
// the task after its backoff; tasks.SkipRetry makes it dead at once.
func (a *app) sendWelcome(ctx context.Context, j *tasks.Job[signup]) error {
	_ = j.Progress(ctx, progress{"writing the mail", 1, 3})
	m := message{To: j.Payload.Email, Subject: "Welcome!", Body: "Hello " + cmp.Or(j.Payload.Name, j.Payload.Email) + ",\n\nthanks for signing up.\n"}
	_ = j.Progress(ctx, progress{"sending", 2, 3})
	if err := a.send(ctx, m, j.Attempt); err != nil {
		a.log.Warn("welcome mail failed", "to", m.To, "attempt", j.Attempt, "of", j.MaxAttempts, "err", err)
		if permanent(err) { // a 5xx reply: retrying won't help
			return tasks.SkipRetry(err)
		}
		return err
	}
	_ = j.Progress(ctx, progress{"sent", 3, 3})
	a.log.Info("welcome mail sent", "to", m.To, "attempt", j.Attempt, "node", a.runner.Node())
	return nil
}

// sendDigest is the periodic "digest.send" handler: it mails MAIL_FROM a
// summary of the welcome queue, with the sign-ups whose mail is dead.
func (a *app) sendDigest(ctx context.Context, j *tasks.Job[any]) error {
	counts, err := a.runner.Counts(ctx)
	if err != nil {
		return err
	}
	c := counts["welcome"]
	dead, err := a.runner.List(ctx, tasks.ListOptions{Queue: "welcome", State: tasks.Dead, Limit: 20})
	if err != nil {
		return err
	}
	body := fmt.Sprintf("Welcome mails: %d sent, %d waiting, %d dead.\n", c[tasks.Succeeded],
		c[tasks.Pending]+c[tasks.Scheduled]+c[tasks.Active]+c[tasks.Retry], c[tasks.Dead])
	for _, t := range dead.Tasks {
		body += fmt.Sprintf("  dead: %s (%s)\n", t.Payload, t.LastError)
	}
	_ = j.Progress(ctx, progress{"sending", 1, 1})
	return a.send(ctx, message{To: a.cfg.From, Subject: "Email digest", Body: body}, j.Attempt)
}

// progress is what the handlers report; /tasks draws it as a bar.
type progress struct {
	Step  string `json:"step"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err == nil {
		err = serve(ctx, ln, cfg, log)
	}
	if err != nil {
		log.Error("email stopped", "err", err)
		os.Exit(1)
	}
}

// serve runs the app on ln until ctx ends, then shuts down (see
// [app.serve]).
func serve(ctx context.Context, ln net.Listener, cfg config, log *slog.Logger) error {
	a, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	return a.serve(ctx, ln)
}

// serve runs a on ln until ctx ends, then shuts down: streams first, then
// HTTP, then the runner, which finishes the tasks it is running.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	defer a.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- a.runner.Run(ctx) }()
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("email listening", "tasks", "http://"+ln.Addr().String()+"/tasks", "inspector", "http://"+ln.Addr().String()+"/admin/tasks/", "node", a.runner.Node(), "redis", a.cfg.RedisURL != "", "smtp", a.cfg.SMTPAddr)
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	cancel() // the runner stops taking tasks and finishes those it runs
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	_ = a.events.Shutdown(sctx) // ends the /events streams, which HTTP shutdown would wait for
	_ = a.admin.Shutdown(sctx)  // and the inspector's
	if serr := srv.Shutdown(sctx); err == nil {
		err = serr
	}
	return errors.Join(err, <-ran)
}
