package main

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

// Metrics for Prometheus, served on /metrics. rtkit itself depends on no
// metrics library: each part has a Stats method (counters since start and
// current gauges), and statsCollector below turns them into Prometheus
// families at every scrape. Copy it into your app as it is.
//
// Every figure is this replica's, except rtkit_tasks (the task store's
// counts, shared by every replica on one Redis: aggregate it with max,
// not sum).

// statsCollector reads the Stats of the hub, the SSE broker and the cache,
// and the task store's counts, when Prometheus scrapes.
type statsCollector struct {
	hub    func() realtime.Stats
	events func() sse.Stats
	cache  func() cache.Stats
	counts func(context.Context) (map[string]map[tasks.State]int, error)
}

// desc is one family of statsCollector: its description and how to read
// its value from the stats.
type desc struct {
	d     *prometheus.Desc
	kind  prometheus.ValueType
	value func(*snapshot) float64
}

// snapshot is one scrape's reading of every Stats.
type snapshot struct {
	hub    realtime.Stats
	events sse.Stats
	cache  cache.Stats
}

func counter(name, help string, v func(*snapshot) float64) desc {
	return desc{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, v}
}

func gauge(name, help string, v func(*snapshot) float64) desc {
	return desc{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, v}
}

var statsDescs = []desc{
	gauge("rtkit_hub_connections", "Open WebSocket connections.", func(s *snapshot) float64 { return float64(s.hub.Connections) }),
	gauge("rtkit_hub_rooms", "Rooms with members on this replica.", func(s *snapshot) float64 { return float64(s.hub.Rooms) }),
	gauge("rtkit_hub_memberships", "Room memberships on this replica.", func(s *snapshot) float64 { return float64(s.hub.Memberships) }),
	counter("rtkit_hub_messages_received_total", "Objects received from WebSocket clients.", func(s *snapshot) float64 { return float64(s.hub.MessagesIn) }),
	counter("rtkit_hub_messages_published_total", "Messages published to rooms (ephemeral ones such as typing excluded).", func(s *snapshot) float64 { return float64(s.hub.Published) }),
	counter("rtkit_hub_frames_written_total", "WebSocket frames written (each may carry several objects).", func(s *snapshot) float64 { return float64(s.hub.FramesOut) }),
	counter("rtkit_hub_objects_written_total", "Objects written to WebSocket clients.", func(s *snapshot) float64 { return float64(s.hub.ObjectsOut) }),
	counter("rtkit_hub_slow_consumers_total", "WebSocket connections closed because they read too slowly.", func(s *snapshot) float64 { return float64(s.hub.SlowConsumers) }),
	counter("rtkit_hub_rate_limited_total", "Objects refused by the inbound rate limit.", func(s *snapshot) float64 { return float64(s.hub.RateLimited) }),

	gauge("rtkit_sse_streams", "Open SSE streams.", func(s *snapshot) float64 { return float64(s.events.Streams) }),
	counter("rtkit_sse_events_published_total", "Events published through the SSE broker.", func(s *snapshot) float64 { return float64(s.events.Published) }),
	counter("rtkit_sse_events_written_total", "Events written to SSE streams.", func(s *snapshot) float64 { return float64(s.events.Written) }),
	counter("rtkit_sse_streams_dropped_total", "SSE streams dropped as slow consumers.", func(s *snapshot) float64 { return float64(s.events.Dropped) }),

	counter("rtkit_cache_local_hits_total", "Values served by the in-process tier.", func(s *snapshot) float64 { return float64(s.cache.LocalHits) }),
	counter("rtkit_cache_hits_total", "Fresh values served by the store (Redis).", func(s *snapshot) float64 { return float64(s.cache.Hits) }),
	counter("rtkit_cache_misses_total", "Values that had to be loaded.", func(s *snapshot) float64 { return float64(s.cache.Misses) }),
	counter("rtkit_cache_stale_served_total", "Stale values served while refreshing or because a load failed.", func(s *snapshot) float64 { return float64(s.cache.StaleServed) }),
	counter("rtkit_cache_loads_total", "Loader calls.", func(s *snapshot) float64 { return float64(s.cache.Loads) }),
	counter("rtkit_cache_load_errors_total", "Loader calls that failed.", func(s *snapshot) float64 { return float64(s.cache.LoadErrors) }),
	counter("rtkit_cache_store_errors_total", "Failed store operations (the cache failed open).", func(s *snapshot) float64 { return float64(s.cache.StoreErrors) }),
	counter("rtkit_cache_load_seconds_total", "Time spent in loader calls.", func(s *snapshot) float64 { return s.cache.LoadTime.Seconds() }),
}

var tasksDesc = prometheus.NewDesc("rtkit_tasks", "Tasks in the task store by queue and state (shared by every replica on one Redis).", []string{"queue", "state"}, nil)

// Describe sends every family's description.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range statsDescs {
		ch <- d.d
	}
	ch <- tasksDesc
}

// Collect reads the stats once and sends every family. The task counts
// are left out of a scrape when the store does not answer within 2s.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := snapshot{hub: c.hub(), events: c.events(), cache: c.cache()}
	for _, d := range statsDescs {
		ch <- prometheus.MustNewConstMetric(d.d, d.kind, d.value(&s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(tasksDesc, err)
		return
	}
	for queue, states := range counts {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), queue, string(state))
		}
	}
}

// metrics is the app's registry: the stats collector, the task runner's
// outcomes and run times (from its events: rtkit's Stats have no task
// figures), HTTP request durations, and Go's and the process's own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
	runTime  *prometheus.HistogramVec

	mu      sync.Mutex
	started map[string]time.Time // task ID → when its running attempt started on this replica
}

func newMetrics(a *app) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chat_http_request_duration_seconds",
			Help:    "HTTP requests by route, method and status: how long they took (WebSocket and SSE routes: until the upgrade or the first byte).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtkit_tasks_processed_total",
			Help: "Task attempts this replica finished, by task type and outcome (succeeded, retrying, failed, dead, interrupted, cancelled).",
		}, []string{"type", "outcome"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rtkit_task_run_duration_seconds",
			Help:    "How long task attempts ran on this replica, by task type.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		started: make(map[string]time.Time),
	}
	m.reg.MustRegister(
		&statsCollector{hub: a.hub.Stats, events: a.events.Stats, cache: a.cache.Stats, counts: a.tasks.Counts},
		m.requests, m.outcomes, m.runTime,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// taskEvent counts one of this replica's task events.
func (m *metrics) taskEvent(e tasks.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Kind == tasks.EventStarted {
		m.started[e.TaskID] = e.Time
		return
	}
	switch e.Kind {
	case tasks.EventSucceeded, tasks.EventRetrying, tasks.EventFailed, tasks.EventDead, tasks.EventInterrupted, tasks.EventCancelled:
	default:
		return
	}
	m.outcomes.WithLabelValues(e.Type, string(e.Kind)).Inc()
	if t, ok := m.started[e.TaskID]; ok {
		delete(m.started, e.TaskID)
		m.runTime.WithLabelValues(e.Type).Observe(e.Time.Sub(t).Seconds())
	}
}
