package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"time"

	"github.com/rtkit/rtkit/sse"
)

// The live dashboard: every replica publishes its counters to the
// dashboard topic every StatsEvery; the page streams that topic and the
// chat rooms (their messages and presence changes come through as "msg"
// and "presence" events) over one EventSource.

const statsTopic = "dashboard:stats"

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
		data, _ := json.Marshal(st)
		pctx, cancel := context.WithTimeout(ctx, a.cfg.StatsEvery)
		if _, err := a.events.Publish(pctx, statsTopic, sse.Event{Type: "stats", Data: data}); err != nil && ctx.Err() == nil {
			a.log.Warn("publishing dashboard stats", "err", err)
		}
		cancel()
	}
}

// dashboardTopics streams the stats and every room.
func (a *app) dashboardTopics(r *http.Request) ([]string, error) {
	return append([]string{statsTopic}, a.cfg.Rooms...), nil
}

// authorizeDashboard lets signed-in users watch (EventSource cannot set
// headers: the token comes as a query parameter).
func (a *app) authorizeDashboard(r *http.Request, topic string) error {
	_, err := verifyToken(a.cfg.Secret, r.URL.Query().Get("token"), time.Now())
	return err
}
