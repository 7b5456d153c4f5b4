package inspect

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rtkit/rtkit/internal/uplot"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

// Action names what a request does, for [Options.Authorize].
type Action string

// The actions of the inspector. Every GET is ActionRead; each POST is one
// of the others.
const (
	// ActionRead: any page, the live stream, the assets.
	ActionRead Action = "read"
	// ActionRun: make a scheduled or retrying task pending now.
	ActionRun Action = "run"
	// ActionRetry: make a dead or cancelled task pending again, with
	// fresh attempts.
	ActionRetry Action = "retry"
	// ActionCancel: cancel a waiting task, or ask a running one to stop.
	ActionCancel Action = "cancel"
	// ActionDelete: delete a task that isn't running.
	ActionDelete Action = "delete"
	// ActionPause: pause a queue.
	ActionPause Action = "pause"
	// ActionResume: resume a paused queue.
	ActionResume Action = "resume"
)

// ErrForbidden is what the default Authorize returns for every action but
// reading.
var ErrForbidden = errors.New("inspect: action not allowed (set Options.Authorize)")

// Options configure an [Inspector]. The zero value serves read-only pages
// at the root of the mux it is mounted on.
type Options struct {
	// Prefix is the path the inspector is mounted under, without a
	// trailing slash ("/admin/tasks"): links and form targets start with
	// it, and it is stripped from request paths that start with it (so the
	// inspector works with or without http.StripPrefix in front). Default
	// "": mounted at the root.
	Prefix string

	// Authorize decides whether the request may do action. It is called
	// for every request, reading included; an error answers 403.
	//
	// DEFAULT: READ-ONLY. When Authorize is nil, every request may read
	// (anyone who reaches the handler sees every task's payload and
	// errors) and every action (retry, cancel, delete, pause, ...) is
	// refused with 403. Put the inspector behind your authentication, and
	// set Authorize to allow actions to operators only, e.g.:
	//
	//	Authorize: func(r *http.Request, a inspect.Action) error {
	//		if !isAdmin(r) { return inspect.ErrForbidden }
	//		return nil
	//	},
	Authorize func(r *http.Request, action Action) error

	// Secret keys the CSRF tokens of the forms (HMAC-SHA256 of a random
	// per-browser cookie). Default: 32 random bytes made by New, so a
	// token is valid only on the process that made it: behind a load
	// balancer without sticky sessions, give every node the same Secret
	// (at least 32 bytes).
	Secret []byte

	// MaxPayload caps the bytes of a payload or progress value a task's
	// page shows (the rest is cut, and the page says so). Default 64 KiB.
	MaxPayload int

	// Logger receives errors of the live updates. Default slog.Default().
	Logger *slog.Logger

	// BackLink, when its URL is set, puts a link back to the app that
	// mounts the inspector at the start of every page's header, e.g.
	// {URL: "/", Label: "Back to the chat"}. See [Link] for the URLs
	// accepted; New panics on any other. Default: no link.
	BackLink Link
}

// Link is a link for the inspector's pages to show.
type Link struct {
	// URL is where the link goes: an absolute http or https URL
	// ("https://app.example/"), or one without a scheme, resolved
	// against the page's ("/", "../settings", "?tab=2",
	// "//app.example/"). New panics on a URL that net/url can't parse or
	// whose scheme is anything else (javascript:, data:, mailto:, ...).
	// It is HTML-escaped where it is shown.
	URL string
	// Label is the link's text, HTML-escaped. Default "Back".
	Label string
}

// Inspector is the web inspector of a [tasks.Runner]: an http.Handler
// serving an overview of the queues, lists of tasks, task pages and
// actions, live over Server-Sent Events. Create it with [New]; it is safe
// for concurrent use.
//
// It reads and changes tasks through the runner's inspection methods
// (Counts, List, Get, Retry, Cancel, Delete, PauseQueue, ResumeQueue), so
// any runner sharing the store works, including one that never calls Run.
type Inspector struct {
	r      *tasks.Runner
	opts   Options
	prefix string
	secret []byte
	log    *slog.Logger
	mux    *http.ServeMux
	pages  *template.Template
	broker *sse.Broker
	live   *live
}

// maxForm bounds the body of a POST.
const maxForm = 1 << 20

//go:embed assets
var assets embed.FS

// New returns an inspector of r's tasks. It starts no goroutine: the live
// updates subscribe to r's events at the first request, and [Inspector.Shutdown]
// ends them. New panics if Secret is set but shorter than 32 bytes, or if
// BackLink's URL is not one [Link] allows.
func New(r *tasks.Runner, opts Options) *Inspector {
	in := &Inspector{r: r, opts: opts, prefix: strings.TrimSuffix(opts.Prefix, "/"), secret: opts.Secret, log: opts.Logger}
	if in.log == nil {
		in.log = slog.Default()
	}
	if in.opts.MaxPayload <= 0 {
		in.opts.MaxPayload = 64 << 10
	}
	if in.secret == nil {
		in.secret = make([]byte, 32)
		_, _ = rand.Read(in.secret)
	} else if len(in.secret) < 32 {
		panic("inspect: Options.Secret must be at least 32 bytes")
	}
	if in.opts.BackLink.URL != "" {
		if err := checkLink(in.opts.BackLink.URL); err != nil {
			panic("inspect: Options.BackLink: " + err.Error())
		}
		if in.opts.BackLink.Label == "" {
			in.opts.BackLink.Label = "Back"
		}
	}
	if in.opts.Authorize == nil {
		in.opts.Authorize = func(_ *http.Request, a Action) error {
			if a == ActionRead {
				return nil
			}
			return ErrForbidden
		}
	}
	in.pages = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html"))
	in.broker = sse.NewBroker(sse.Options{
		Topics:    func(*http.Request) ([]string, error) { return []string{liveTopic}, nil },
		Authorize: func(*http.Request, string) error { return nil }, // checked by ServeHTTP
		Heartbeat: 15 * time.Second,
		Logger:    in.log,
	})
	in.live = newLive(in)

	static, _ := fs.Sub(assets, "assets")
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", in.overview)
	m.HandleFunc("GET /queues/{queue}/{state}", in.list)
	m.HandleFunc("GET /task", in.task)
	m.HandleFunc("GET /events", in.events)
	m.Handle("GET /uplot/", http.StripPrefix("/uplot", uplot.Handler()))
	m.Handle("GET /static/", http.StripPrefix("/static", staticHandler(static)))
	m.HandleFunc("POST /action", in.action)
	in.mux = m
	return in
}

// checkLink accepts an http or https URL, or one without a scheme.
func checkLink(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch strings.ToLower(u.Scheme) {
	case "", "http", "https":
		return nil
	}
	return fmt.Errorf("%q: only http, https or relative URLs are allowed", s)
}

func staticHandler(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the inspector's routes, relative to Options.Prefix:
//
//	GET  /                        overview: queues, counts by state, rates, nodes and their running tasks
//	GET  /queues/{queue}/{state}  a page of tasks (?cursor= to go on, ?q= to search by ID, type or unique key)
//	GET  /task?id=ID              a task: payload, attempts, progress, events, times
//	GET  /events                  the live stream (text/event-stream) the pages listen to
//	POST /action                  an action (form fields: action, csrf, id..., queue, state, all, back)
//	GET  /static/..., /uplot/...  the embedded script, style sheet and chart library
//
// Unknown paths get 404, other methods 405. Every request is first
// passed to Authorize (403 when it refuses); a POST also needs the form's
// CSRF token (403 without it).
func (in *Inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if in.prefix != "" && strings.HasPrefix(r.URL.Path, in.prefix) {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = strings.TrimPrefix(r.URL.Path, in.prefix)
		u.RawPath = ""
		if u.Path == "" {
			u.Path = "/"
		}
		r2.URL = &u
		r = r2
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	action := ActionRead
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		action = Action(r.PostFormValue("action"))
	}
	if err := in.opts.Authorize(r, action); err != nil {
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	in.live.start()
	in.mux.ServeHTTP(w, r)
}

// Shutdown ends the live streams (their pages reconnect, to this node or
// another) and the inspector's subscription to the runner's events, and
// waits for them. It returns ctx's error if ctx ends first. Pages keep
// working after Shutdown, without live updates. Call it before the
// http.Server's Shutdown, which otherwise waits for the streams.
func (in *Inspector) Shutdown(ctx context.Context) error {
	in.live.close()
	return in.broker.Shutdown(ctx)
}
