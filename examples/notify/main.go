// Command notify is exercise 4 of the course: a notification system.
//
// Users subscribe to kinds of notification. An event posted to
// POST /api/events reaches every subscribed user who is connected, at once,
// over a WebSocket (the realtime hub) or Server-Sent Events (the SSE broker):
// both serve the same per-user topic. Every notification is also stored,
// with unread counts and mark-as-read. A user who is offline gets one
// email for everything that arrived while away, sent by a background task
// that waits BATCH_WINDOW (so that a burst becomes one mail) and until
// the user has been away OFFLINE_AFTER.
//
//	go run ./examples/notify
//	SMTP_ADDR=127.0.0.1:1025 go run ./examples/notify   # mails through Mailpit
//
// The user is whoever the ?user= parameter names: there is no login here
// (examples/chat has one). Everything lives in this one process.
package main

import (
	"context"
	"embed"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

//go:embed index.html
var page embed.FS

// kinds are the notifications a user may subscribe to.
var kinds = []string{"orders", "comments", "security"}

type notification struct {
	ID     int64     `json:"id"`
	Kind   string    `json:"kind"`
	Text   string    `json:"text"`
	Time   time.Time `json:"time"`
	Read   bool      `json:"read"`
	mailed bool
}

// prefs are a user's preferences.
type prefs struct {
	Kinds []string `json:"kinds"` // the kinds the user receives
	Email string   `json:"email"` // where the offline mail goes; "" for none
}

type user struct {
	prefs  prefs
	inbox  []*notification // oldest first, at most inboxSize
	online int             // open WebSockets and SSE streams
	left   time.Time       // when the last one closed
}

const inboxSize = 100

type app struct {
	cfg    config
	log    *slog.Logger
	bp     rtkit.Backplane
	hub    *realtime.Hub // WebSocket clients
	events *sse.Broker   // SSE clients, on the same backplane and topics
	runner *tasks.Runner
	send   mailer

	mu     sync.Mutex
	users  map[string]*user
	nextID int64
}

// topic is where a user's live notifications go: a room of the hub, which
// the SSE broker streams too.
func topic(name string) string { return "user:" + name }

func newApp(cfg config, log *slog.Logger) *app {
	a := &app{cfg: cfg, log: log, users: map[string]*user{}, send: newMailer(cfg, log)}
	a.bp = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	a.hub = realtime.NewHub(realtime.Options{
		Backplane: a.bp, Logger: log,
		Authenticate: func(r *http.Request) (realtime.Identity, error) {
			name, err := userParam(r)
			return realtime.Identity{User: name}, err
		},
		Authorize: func(_ context.Context, id realtime.Identity, act realtime.Action) error {
			if act.Kind == realtime.ActionJoin && act.Room == topic(id.User) {
				return nil
			}
			return errors.New("only joining your own notifications is allowed")
		},
		OnConnect:    func(c realtime.ConnInfo) { a.setOnline(c.Identity.User, +1) },
		OnDisconnect: func(c realtime.ConnInfo, _ error) { a.setOnline(c.Identity.User, -1) },
	})
	a.events = sse.NewBroker(sse.Options{Backplane: a.bp, Logger: log, Topics: func(r *http.Request) ([]string, error) {
		name, err := userParam(r)
		return []string{topic(name)}, err
	}, OnStream: a.streamSSE})
	a.runner = tasks.NewRunner(tasks.Options{Logger: log})
	tasks.Handle(a.runner, "notify.mail", a.mailOffline)
	return a
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/events", a.postEvent)
	mux.HandleFunc("GET /api/notifications", a.listNotifications)
	mux.HandleFunc("POST /api/notifications/read", a.markRead)
	mux.HandleFunc("GET /api/prefs", a.getPrefs)
	mux.HandleFunc("PUT /api/prefs", a.putPrefs)
	mux.Handle("GET /ws", a.hub)
	mux.Handle("GET /events", a.events)
	mux.Handle("GET /rtkit.js", realtime.ClientHandler())
	mux.Handle("GET /{$}", http.FileServerFS(page)) // index.html
	return mux
}

// postEvent stores the event as a notification for each subscribed user
// (or only the one named by "to"), sends it live to those connected, and
// schedules the offline mail for the others.
func (a *app) postEvent(w http.ResponseWriter, r *http.Request) {
	var ev struct{ Kind, Text, To string }
	if err := decodeJSON(r, &ev); err != nil || !slices.Contains(kinds, ev.Kind) || ev.Text == "" || len(ev.Text) > 500 || ev.To != "" && !validName(ev.To) {
		http.Error(w, `want {"kind": "orders|comments|security", "text": "...", "to": "optional user"}`, http.StatusBadRequest)
		return
	}
	type delivery struct {
		name         string
		n            notification
		unread       int
		online, mail bool
	}
	var out []delivery
	a.mu.Lock()
	if ev.To != "" {
		a.user(ev.To)
	}
	for name, u := range a.users {
		if ev.To != "" && name != ev.To || !slices.Contains(u.prefs.Kinds, ev.Kind) {
			continue
		}
		a.nextID++
		n := &notification{ID: a.nextID, Kind: ev.Kind, Text: ev.Text, Time: time.Now()}
		u.inbox = append(u.inbox, n)
		if len(u.inbox) > inboxSize {
			u.inbox = u.inbox[1:]
		}
		out = append(out, delivery{name, *n, unread(u), u.online > 0, u.prefs.Email != ""})
	}
	a.mu.Unlock()

	sum := map[string]int{"stored": len(out), "live": 0, "mail": 0}
	for _, d := range out {
		// Live to every tab of the user, WebSocket or SSE: one publish.
		if _, err := a.hub.Publish(r.Context(), topic(d.name), live{Type: "notification", Notification: &d.n, Unread: d.unread}); err != nil {
			a.log.Error("publish", "user", d.name, "err", err)
		}
		if d.online {
			sum["live"]++
		} else if d.mail {
			sum["mail"] += a.scheduleMail(r.Context(), d.name)
		}
	}
	writeJSON(w, http.StatusOK, sum)
}

// live is what a connected user receives.
type live struct {
	Type         string        `json:"type"` // "notification" or "read"
	Notification *notification `json:"notification,omitempty"`
	Unread       int           `json:"unread"`
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
		log.Info("notify listening", "url", "http://"+ln.Addr().String()+"/", "smtp", cfg.SMTPAddr)
		err = serve(ctx, ln, newApp(cfg, log))
	}
	if err != nil {
		log.Error("notify stopped", "err", err)
		os.Exit(1)
	}
}

// serve runs a on ln until ctx ends, then closes the WebSockets and
// streams (their clients reconnect elsewhere), HTTP, and the task runner.
func serve(ctx context.Context, ln net.Listener, a *app) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- a.runner.Run(ctx) }()
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	err = errors.Join(err, a.hub.Shutdown(sctx), a.events.Shutdown(sctx), srv.Shutdown(sctx), <-ran, a.bp.Close())
	return err
}
