package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/tasks"
)

// The live dashboard (/dashboard.html): every replica publishes its
// counters to the stats topic every StatsEvery; the page first reads the
// last hour from history (GET /api/dashboard), then streams the stats,
// the public rooms (their messages and presence changes come as "msg" and
// "presence" events) and, for admins, the task feed over one EventSource.

const (
	statsTopic    = "sys:stats"
	tasksTopic    = "sys:tasks"    // the runners' raw events: not streamed to pages
	taskFeedTopic = "sys:taskfeed" // the same, named and redacted (taskfeed.go)
)

// nodeStats is what a replica publishes.
type nodeStats struct {
	Node        string `json:"node"`
	Time        int64  `json:"time"`
	Connections int    `json:"connections"`
	Rooms       int    `json:"rooms"`
	Members     int    `json:"members"`
	Published   int64  `json:"published"`
	Streams     int    `json:"streams"`
	SlowClosed  int64  `json:"slowClosed"`
	CacheHits   int64  `json:"cacheHits"`
	CacheMisses int64  `json:"cacheMisses"`
	// Tasks counts the tasks by state, all queues together: those of the
	// shared store with Redis, so every replica reports the same.
	Tasks map[tasks.State]int `json:"tasks,omitempty"`
}

// nodeName names a replica on the dashboard and in the task inspector:
// its host name and port ("web-1:8080"), which tell apart replicas on
// one machine and replicas in containers alike.
func nodeName(addr string) string {
	host, _ := os.Hostname()
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return host + ":" + port
	}
	return host + " " + addr
}

// publishStats runs until ctx ends.
func (a *app) publishStats(ctx context.Context) {
	t := time.NewTicker(a.cfg.StatsEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		hs, ss, cs := a.hub.Stats(), a.events.Stats(), a.cache.Stats()
		st := nodeStats{Node: a.node, Time: time.Now().UnixMilli(), Connections: hs.Connections, Rooms: hs.Rooms,
			Members: hs.Memberships, Published: hs.Published, Streams: ss.Streams, SlowClosed: hs.SlowConsumers,
			CacheHits: cs.LocalHits + cs.Hits + cs.StaleServed, CacheMisses: cs.Misses + cs.StoreErrors}
		pctx, cancel := context.WithTimeout(ctx, a.cfg.StatsEvery)
		st.Tasks = a.taskCounts(pctx)
		data, _ := json.Marshal(st)
		if _, err := a.bp.Publish(pctx, statsTopic, data, rtkit.PublishOptions{}); err != nil && ctx.Err() == nil {
			a.log.Warn("publishing dashboard stats", "err", err)
		}
		cancel()
	}
}

// taskCounts sums the task counts of all queues, or returns nil when the
// store does not answer.
func (a *app) taskCounts(ctx context.Context) map[tasks.State]int {
	counts, err := a.tasks.Counts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("counting tasks", "err", err)
		}
		return nil
	}
	sum := make(map[tasks.State]int, len(tasks.States))
	for _, s := range tasks.States {
		sum[s] = 0
	}
	for _, byState := range counts {
		for s, n := range byState {
			sum[s] += n
		}
	}
	return sum
}

// streamTopics: the "topic" query parameters, or the dashboard's: stats
// for everyone; the task feed and the public rooms' activity for admins.
func (a *app) streamTopics(r *http.Request) ([]string, error) {
	if t := r.URL.Query()["topic"]; len(t) > 0 {
		return t, nil
	}
	u, _, err := a.session(r)
	if err != nil {
		return nil, err
	}
	// Members get the counters only: who said what and who came and went
	// are other users' data, for admins (the issue's "members see a
	// dashboard without other users' data").
	if u.Role != roleAdmin {
		return []string{statsTopic}, nil
	}
	public, err := a.publicRooms(r.Context())
	return append([]string{statsTopic, taskFeedTopic}, public...), err
}

func (a *app) publicRooms(ctx context.Context) ([]string, error) {
	rooms, err := a.rooms(ctx)
	var out []string
	for _, r := range rooms {
		if !r.Private && !r.Archived {
			out = append(out, r.Name)
		}
	}
	return out, err
}

// authorizeStream is the broker's Authorize hook: the same rules as the
// hub's, with the dashboard's topics besides.
func (a *app) authorizeStream(r *http.Request, topic string) error {
	u, _, err := a.session(r)
	switch {
	case err != nil:
		return err
	case topic == statsTopic:
		return nil
	case topic == taskFeedTopic:
		if u.Role != roleAdmin {
			return errors.New("admins only")
		}
		return nil
	case strings.HasPrefix(topic, "sys:"):
		return errors.New("not a stream")
	}
	return a.canRead(r.Context(), u.Handle, topic)
}

// streamExpiry ends a stream when its session token expires; EventSource
// reconnects with the refreshed cookie.
func (a *app) streamExpiry(r *http.Request) time.Time {
	_, exp, _ := a.parseToken(requestToken(r))
	return exp
}

// eventsHandler answers 401 without a session (the broker's Authorize
// refuses with 403, which means "not yours" rather than "sign in").
func (a *app) eventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := a.session(r); err != nil {
			fail(w, http.StatusUnauthorized, "", "sign in first")
			return
		}
		a.events.ServeHTTP(w, r)
	})
}

// activity is one line of the dashboard's recent activity.
type activity struct {
	Room string `json:"room"`
	User string `json:"user"`
	Text string `json:"text"`
	At   int64  `json:"at"`
}

// dashboardHistory answers GET /api/dashboard: the last hour of stats
// and, for admins, the latest public messages and task events, so that the
// page does not start empty; and "since", the position of that history in
// the page's stream (its Last-Event-ID: the topics' newest IDs in the
// order of their sorted names, "0-0" for an empty one), so that the
// stream goes on exactly where the history ends: what is published in
// between is neither lost nor shown twice. "since" is "" when a history
// could not be read; the stream then starts live.
func (a *app) dashboardHistory(w http.ResponseWriter, r *http.Request) {
	u, _, err := a.session(r)
	if err != nil {
		fail(w, http.StatusUnauthorized, "", "sign in first")
		return
	}
	ctx := r.Context()
	out := struct {
		Stats    []json.RawMessage `json:"stats"`
		Tasks    []json.RawMessage `json:"tasks"`
		Activity []activity        `json:"activity"`
		Admin    bool              `json:"admin"`
		Since    string            `json:"since"`
	}{Stats: []json.RawMessage{}, Tasks: []json.RawMessage{}, Activity: []activity{}, Admin: u.Role == roleAdmin}
	topics, err := a.streamTopics(r) // the page's stream: no ?topic=
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "", "history is unavailable")
		return
	}
	positions := make(map[string]rtkit.ID, len(topics))
	complete := true
	for _, topic := range topics {
		var limit int // stats: the whole hour
		switch {
		case topic == taskFeedTopic:
			limit = 50
		case topic != statsTopic:
			limit = 20
		}
		hist, err := a.bp.History(ctx, topic, rtkit.HistoryOptions{Limit: limit})
		if err != nil {
			if topic == statsTopic {
				fail(w, http.StatusServiceUnavailable, "", "history is unavailable")
				return
			}
			complete = false
			continue
		}
		positions[topic] = hist.Position
		switch {
		case topic == statsTopic:
			for _, m := range hist.Messages {
				out.Stats = append(out.Stats, m.Data)
			}
		case topic == taskFeedTopic:
			for _, m := range hist.Messages {
				out.Tasks = append(out.Tasks, m.Data)
			}
		default: // a public room (admins)
			for _, e := range applyEdits(hist.Messages) {
				out.Activity = append(out.Activity, activity{Room: topic, User: e.User, Text: e.Text, At: e.At})
			}
		}
	}
	if complete {
		out.Since = streamPosition(positions)
	}
	slices.SortFunc(out.Activity, func(x, y activity) int { return int(x.At - y.At) })
	if n := len(out.Activity); n > 30 {
		out.Activity = out.Activity[n-30:]
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, out)
}

// streamPosition is the SSE broker's Last-Event-ID for these topics and
// positions: the positions in the order of the sorted topic names, "0-0"
// for a topic with no message yet.
func streamPosition(positions map[string]rtkit.ID) string {
	ids := make([]string, 0, len(positions))
	for _, topic := range slices.Sorted(maps.Keys(positions)) {
		id := positions[topic].String()
		if id == "" {
			id = "0-0"
		}
		ids = append(ids, id)
	}
	return strings.Join(ids, ",")
}
