package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startOps runs the app as main does (with /metrics, request logs and
// readiness) on a loopback server until the test ends.
func startOps(t *testing.T, cfg config, log *slog.Logger) (*app, *ops, string) {
	t.Helper()
	a, err := newApp(cfg, log)
	require.NoError(t, err)
	o, err := newOps(a, log)
	require.NoError(t, err)
	srv := httptest.NewServer(o.handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.shutdown(ctx))
		o.close()
		srv.Close()
	})
	return a, o, srv.URL
}

// scrape fetches /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value is the sum of the family's samples whose labels include want
// (counters and gauges), or their observation count (histograms).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "family %s is missing", name)
	var sum float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		default:
			t.Fatalf("%s: unexpected type %s", name, f.GetType())
		}
	}
	return sum
}

func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	a, _, base := startOps(t, testConfig(), slog.New(slog.DiscardHandler))
	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob") // offline: mentions mail him, through two tasks
	enter(t, alice, "general")
	say(t, alice, "general", "hello")
	say(t, alice, "general", "@bob are you there?")
	say(t, alice, "general", "third")
	waitTasks(t, a, tasks.Succeeded, 2)
	get(t, base, "/healthz", "")
	get(t, base, "/no-such-page/at/all", "")

	fams := scrape(t, base)
	for name, typ := range map[string]dto.MetricType{
		"rtkit_hub_connections":              dto.MetricType_GAUGE,
		"rtkit_hub_messages_published_total": dto.MetricType_COUNTER,
		"rtkit_hub_messages_received_total":  dto.MetricType_COUNTER,
		"rtkit_sse_streams":                  dto.MetricType_GAUGE,
		"rtkit_sse_events_published_total":   dto.MetricType_COUNTER,
		"rtkit_cache_hits_total":             dto.MetricType_COUNTER,
		"rtkit_cache_misses_total":           dto.MetricType_COUNTER,
		"rtkit_cache_stale_served_total":     dto.MetricType_COUNTER,
		"rtkit_cache_loads_total":            dto.MetricType_COUNTER,
		"rtkit_tasks":                        dto.MetricType_GAUGE,
		"rtkit_tasks_processed_total":        dto.MetricType_COUNTER,
		"rtkit_task_run_duration_seconds":    dto.MetricType_HISTOGRAM,
		"chat_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"go_goroutines":                      dto.MetricType_GAUGE,
	} {
		f, ok := fams[name]
		if assert.True(t, ok, "family %s", name) {
			assert.Equal(t, typ, f.GetType(), name)
		}
	}
	assert.Equal(t, 1.0, value(t, fams, "rtkit_hub_connections", nil))
	assert.GreaterOrEqual(t, value(t, fams, "rtkit_hub_messages_published_total", nil), 3.0, "three messages said")
	assert.GreaterOrEqual(t, value(t, fams, "rtkit_hub_messages_received_total", nil), 4.0, "a join and three sends at least")
	assert.Equal(t, 2.0, value(t, fams, "rtkit_tasks", map[string]string{"state": string(tasks.Succeeded)}))
	assert.Equal(t, 1.0, value(t, fams, "rtkit_tasks_processed_total", map[string]string{"type": digestTask, "outcome": "succeeded"}))
	assert.Equal(t, 1.0, value(t, fams, "rtkit_tasks_processed_total", map[string]string{"type": mailTask, "outcome": "succeeded"}))
	assert.Equal(t, 2.0, value(t, fams, "rtkit_task_run_duration_seconds", nil))
	assert.Equal(t, 2.0, value(t, fams, "chat_http_request_duration_seconds", map[string]string{"route": "POST /api/register", "code": "201"}))
	assert.Equal(t, 1.0, value(t, fams, "chat_http_request_duration_seconds", map[string]string{"route": "GET /ws", "code": "101"}))
	assert.Equal(t, 1.0, value(t, fams, "chat_http_request_duration_seconds", map[string]string{"route": "GET /healthz", "code": "200"}))
	assert.Equal(t, 1.0, value(t, fams, "chat_http_request_duration_seconds", map[string]string{"code": "404"}))
}
