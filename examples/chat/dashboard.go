package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"time"

	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

// The live dashboard: every replica publishes its counters to the
// dashboard topic every StatsEvery; the page streams that topic, the chat
// rooms (their messages and presence changes come through as "msg" and
// "presence" events) and the task runners' events (JSON objects without an
// event type: "message" events) over one EventSource.

const (
	statsTopic = "dashboard:stats"
	tasksTopic = "tasks"
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

func nodeName(addr string) string {
	host, _ := os.Hostname()
	return host + addr
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
		if _, err := a.events.Publish(pctx, statsTopic, sse.Event{Type: "stats", Data: data}); err != nil && ctx.Err() == nil {
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

// dashboardTopics streams the stats, the task events and every room.
func (a *app) dashboardTopics(r *http.Request) ([]string, error) {
	return append([]string{statsTopic, tasksTopic}, a.cfg.Rooms...), nil
}

// authorizeDashboard lets signed-in users watch (EventSource cannot set
// headers: the token comes as a query parameter).
func (a *app) authorizeDashboard(r *http.Request, topic string) error {
	_, err := verifyToken(a.cfg.Secret, r.URL.Query().Get("token"), time.Now())
	return err
}
