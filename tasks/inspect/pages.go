package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

// maxScan bounds the tasks a search by type or unique key reads.
const maxScan = 5000

// snapshot is the overview's data, and the data of the live "counts"
// events.
type snapshot struct {
	// Queues are sorted by name; Counts has every state of each.
	Queues []queueCounts `json:"queues"`
	// Minutes are unix times of the last 60 minutes, oldest first, with
	// the attempts that ended (Processed) and failed in each, as this
	// inspector saw them in the runner's events since it started.
	Minutes   []int64 `json:"minutes"`
	Processed []int   `json:"processed"`
	Failed    []int   `json:"failed"`
}

type queueCounts struct {
	Name   string              `json:"name"`
	Paused bool                `json:"paused"`
	Counts map[tasks.State]int `json:"counts"`
}

func (in *Inspector) snapshot(ctx context.Context) (snapshot, error) {
	counts, err := in.r.Counts(ctx)
	if err != nil {
		return snapshot{}, err
	}
	paused := in.pausedQueues(ctx)
	var s snapshot
	names := make([]string, 0, len(counts))
	for q := range counts {
		names = append(names, q)
	}
	for q := range paused {
		if counts[q] == nil {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	for _, q := range names {
		c := make(map[tasks.State]int, len(tasks.States))
		for _, st := range tasks.States {
			c[st] = counts[q][st]
		}
		s.Queues = append(s.Queues, queueCounts{Name: q, Paused: paused[q], Counts: c})
	}
	s.Minutes, s.Processed, s.Failed = in.live.rates(time.Now())
	return s, nil
}

// node is a worker node and the tasks it runs, for the overview.
type node struct {
	Name  string
	Tasks []*tasks.Task
}

// maxActive bounds the running tasks the overview lists per queue.
const maxActive = 200

func (in *Inspector) nodes(ctx context.Context, s snapshot) ([]node, error) {
	by := map[string][]*tasks.Task{}
	for _, q := range s.Queues {
		if q.Counts[tasks.Active] == 0 {
			continue
		}
		p, err := in.r.List(ctx, tasks.ListOptions{Queue: q.Name, State: tasks.Active, Limit: maxActive})
		if err != nil {
			return nil, err
		}
		for _, t := range p.Tasks {
			by[t.Worker] = append(by[t.Worker], t)
		}
	}
	var out []node
	for name, ts := range by {
		out = append(out, node{name, ts})
	}
	slices.SortFunc(out, func(a, b node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// page is what every template gets.
type page struct {
	Title  string
	Prefix string
	CSRF   string
	Back   Link
	Data   any
}

func (in *Inspector) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	var buf bytes.Buffer
	p := page{Title: title, Prefix: in.prefix, CSRF: in.csrfToken(w, r), Back: in.opts.BackLink, Data: data}
	if err := in.pages.ExecuteTemplate(&buf, name, p); err != nil {
		in.log.Error("inspect: rendering a page failed", "page", name, "err", err)
		http.Error(w, "inspect: rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	_, _ = w.Write(buf.Bytes())
}

func (in *Inspector) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, tasks.ErrInvalid):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, errors.ErrUnsupported):
		http.Error(w, err.Error(), http.StatusNotImplemented)
	case errors.Is(err, tasks.ErrBadState):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		in.log.Warn("inspect: store error", "err", err)
		http.Error(w, "inspect: store error: "+err.Error(), http.StatusServiceUnavailable)
	}
}

func (in *Inspector) overview(w http.ResponseWriter, r *http.Request) {
	s, err := in.snapshot(r.Context())
	if err != nil {
		in.fail(w, err)
		return
	}
	nodes, err := in.nodes(r.Context(), s)
	if err != nil {
		in.fail(w, err)
		return
	}
	in.render(w, r, "overview.html", "Tasks", map[string]any{"Snapshot": s, "States": tasks.States, "Nodes": nodes})
}

type listData struct {
	Queue  string
	State  tasks.State
	States []tasks.State
	Query  string
	Tasks  []*tasks.Task
	Next   string
	Cursor string
	Count  int
	// Scanned is set when a search read maxScan tasks without reaching
	// the end of the list.
	Scanned bool
	Paused  bool
}

func (in *Inspector) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := listData{Queue: r.PathValue("queue"), State: tasks.State(r.PathValue("state")), States: tasks.States,
		Query: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor")}
	if !slices.Contains(tasks.States, d.State) {
		http.Error(w, fmt.Sprintf("inspect: unknown state %q", d.State), http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if d.Query == "" {
		p, err := in.r.List(ctx, tasks.ListOptions{Queue: d.Queue, State: d.State, Cursor: d.Cursor, Limit: 50})
		if err != nil {
			in.fail(w, err)
			return
		}
		d.Tasks, d.Next = p.Tasks, p.Next
	} else {
		var err error
		if d.Tasks, d.Scanned, err = in.search(ctx, d.Queue, d.State, d.Query); err != nil {
			in.fail(w, err)
			return
		}
	}
	if counts, err := in.r.Counts(ctx); err == nil {
		d.Count = counts[d.Queue][d.State]
	}
	d.Paused = in.pausedQueues(ctx)[d.Queue]
	in.render(w, r, "list.html", d.Queue+" · "+string(d.State), d)
}

// search finds the tasks of a queue and state whose ID is query, or whose
// type or unique key equals it, reading at most maxScan tasks.
func (in *Inspector) search(ctx context.Context, queue string, st tasks.State, query string) ([]*tasks.Task, bool, error) {
	var found []*tasks.Task
	if t, err := in.r.Get(ctx, query); err == nil && t.Queue == queue && t.State == st {
		found = append(found, t)
	}
	cursor, read := "", 0
	for read < maxScan {
		p, err := in.r.List(ctx, tasks.ListOptions{Queue: queue, State: st, Cursor: cursor, Limit: 1000})
		if err != nil {
			return nil, false, err
		}
		for _, t := range p.Tasks {
			if (t.Type == query || t.UniqueKey == query) && t.ID != query && len(found) < 50 {
				found = append(found, t)
			}
		}
		read += len(p.Tasks)
		if cursor = p.Next; cursor == "" {
			return found, false, nil
		}
	}
	return found, true, nil
}

type attemptRow struct {
	N        int
	Started  time.Time
	Ended    time.Time
	Duration time.Duration
	Outcome  string
	Error    string
	Node     string
}

type taskData struct {
	Task      *tasks.Task
	Payload   string
	Cut       int
	Progress  string
	Events    []tasks.Event
	Attempts  []attemptRow
	CanRun    bool
	CanRetry  bool
	CanCancel bool
	CanDelete bool
	// KeepEvents is how many events the inspector remembers.
	KeepEvents int
}

func (in *Inspector) task(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		http.Error(w, "inspect: missing id", http.StatusBadRequest)
		return
	}
	t, err := in.r.Get(r.Context(), id)
	if err != nil {
		in.fail(w, err)
		return
	}
	d := taskData{Task: t, Events: in.live.eventsOf(id), KeepEvents: keepEvents}
	d.Payload, d.Cut = in.pretty(t.Payload)
	d.Progress, _ = in.pretty(t.Progress)
	d.Attempts = attempts(d.Events)
	d.CanRun = t.State == tasks.Scheduled || t.State == tasks.Retry
	d.CanRetry = t.State == tasks.Dead || t.State == tasks.Cancelled
	d.CanCancel = !t.State.Final() && !t.CancelRequested
	d.CanDelete = t.State != tasks.Active
	in.render(w, r, "task.html", "Task "+t.ID, d)
}

// pretty indents JSON, turns the \u003c, \u003e and \u0026 escapes of
// encoding/json back into <, > and & (the page's template escapes the
// text for HTML, once), and cuts it at MaxPayload bytes; it returns the
// bytes cut.
func (in *Inspector) pretty(raw json.RawMessage) (string, int) {
	if len(raw) == 0 {
		return "", 0
	}
	var buf bytes.Buffer
	if len(raw) > 4*in.opts.MaxPayload || json.Indent(&buf, raw, "", "  ") != nil {
		buf.Reset()
		buf.Write(raw)
	} else {
		b := unescapeHTML(buf.Bytes())
		buf.Reset()
		buf.Write(b)
	}
	if cut := buf.Len() - in.opts.MaxPayload; cut > 0 {
		return strings.ToValidUTF8(string(buf.Bytes()[:in.opts.MaxPayload]), ""), cut
	}
	return buf.String(), 0
}

// unescapeHTML replaces the escapes \u003c, \u003e and \u0026 (any
// case) in the strings of valid JSON b with the characters they stand
// for; every other escape, "\\u003c" included, stays as it is. The
// result is the same JSON value.
func unescapeHTML(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u00`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 >= len(b) {
			out = append(out, c)
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) {
			switch strings.ToLower(string(b[i+2 : i+6])) {
			case "003c":
				out, i = append(out, '<'), i+5
				continue
			case "003e":
				out, i = append(out, '>'), i+5
				continue
			case "0026":
				out, i = append(out, '&'), i+5
				continue
			}
		}
		// Another escape: copy it whole, so that the backslash of "\\"
		// isn't taken for the start of the next one.
		out = append(out, c, b[i+1])
		i++
	}
	return out
}

// attempts pairs the started events with the ones that ended them.
func attempts(evs []tasks.Event) []attemptRow {
	var rows []attemptRow
	for _, e := range evs {
		switch e.Kind {
		case tasks.EventStarted:
			rows = append(rows, attemptRow{N: e.Attempt, Started: e.Time, Node: e.Node, Outcome: "running"})
		case tasks.EventSucceeded, tasks.EventRetrying, tasks.EventFailed, tasks.EventDead, tasks.EventInterrupted, tasks.EventCancelled:
			for i := len(rows) - 1; i >= 0; i-- {
				if rows[i].N == e.Attempt && rows[i].Ended.IsZero() {
					rows[i].Ended, rows[i].Duration = e.Time, e.Time.Sub(rows[i].Started)
					rows[i].Outcome, rows[i].Error = string(e.Kind), e.Error
					break
				}
			}
		}
	}
	return rows
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	},
	"dur": func(d time.Duration) string {
		if d < time.Millisecond {
			return d.String()
		}
		return d.Round(time.Millisecond).String()
	},
	"q":     url.QueryEscape,
	"path":  url.PathEscape,
	"count": func(c map[tasks.State]int, s tasks.State) int { return c[s] },
	"live":  func(s tasks.State) bool { return !s.Final() },
}
