package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtkit/rtkit/sse"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// testConfig takes no order by itself (tests call takeOrder) and computes
// the report in 50ms.
func testConfig() config {
	return config{Addr: "127.0.0.1:0", Shop: "test", Every: time.Hour, ReportCost: 50 * time.Millisecond, ReportTTL: time.Minute}
}

// startLive serves the example on a loopback port until the test ends.
func startLive(t *testing.T, cfg config) (*app, string) {
	t.Helper()
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(a.routes())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, a.broker.Shutdown(ctx))
		srv.Close()
		assert.NoError(t, a.cache.Shutdown(ctx))
		a.close()
	})
	return a, srv.URL
}

// subscribe streams url with the Go client until the test ends.
func subscribe(t *testing.T, url string, opts sse.ClientOptions) <-chan sse.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan sse.Event, 100)
	done := make(chan struct{})
	opts.Logger = slog.New(slog.DiscardHandler)
	go func() {
		defer close(done)
		_ = sse.Subscribe(ctx, url, opts, func(e sse.Event) error {
			if e.Type == "order" || e.Type == sse.ResetEvent {
				events <- e
			}
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return events
}

// waitStreams waits until the broker streams to n clients.
func waitStreams(t *testing.T, a *app, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); a.broker.Stats().Streams != n; time.Sleep(10 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "no %d streams", n)
	}
}

func nextOrder(t *testing.T, events <-chan sse.Event) (order, string) {
	t.Helper()
	select {
	case e := <-events:
		require.Equal(t, "order", e.Type, "event %s: %s", e.Type, e.Data)
		var o order
		require.NoError(t, json.Unmarshal(e.Data, &o))
		return o, e.ID
	case <-time.After(10 * time.Second):
		t.Fatal("no order")
		return order{}, ""
	}
}

func takeOrders(t *testing.T, a *app, n int) {
	t.Helper()
	for range n {
		require.NoError(t, a.takeOrder(context.Background()))
	}
}

func TestStreamResumesFromLastEventID(t *testing.T) {
	a, base := startLive(t, testConfig())
	url := base + "/events?topic=orders"

	// A page watches orders 1 to 3 arrive, then goes away.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan sse.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- sse.Subscribe(ctx, url, sse.ClientOptions{}, func(e sse.Event) error {
			if e.Type == "order" {
				first <- e
			}
			return nil
		})
	}()
	waitStreams(t, a, 1)
	takeOrders(t, a, 3)
	var lastID string
	for want := int64(1); want <= 3; want++ {
		o, id := nextOrder(t, first)
		assert.Equal(t, want, o.Seq)
		assert.Equal(t, "test", o.Shop)
		assert.NotEmpty(t, id)
		lastID = id
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	waitStreams(t, a, 0)

	// Orders 4 to 6 happen while nobody watches.
	takeOrders(t, a, 3)

	// Back with Last-Event-ID (the header, as EventSource sends it): the
	// missed orders first, in order, then live ones, none twice.
	events := subscribe(t, url, sse.ClientOptions{LastEventID: lastID})
	for want := int64(4); want <= 6; want++ {
		o, _ := nextOrder(t, events)
		assert.Equal(t, want, o.Seq)
	}
	waitStreams(t, a, 1)
	takeOrders(t, a, 1)
	o, _ := nextOrder(t, events)
	assert.Equal(t, int64(7), o.Seq)

	// The page's way: ?last_event_id= on a new EventSource.
	resp, err := http.Get(url + "&last_event_id=" + lastID)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	p := sse.NewParser(resp.Body, 0)
	var seqs []int64
	for len(seqs) < 4 {
		e, err := p.Next()
		require.NoError(t, err)
		if e.Type == "order" {
			require.NoError(t, json.Unmarshal(e.Data, &o))
			seqs = append(seqs, o.Seq)
		}
	}
	assert.Equal(t, []int64{4, 5, 6, 7}, seqs)
}

// getJSON GETs url (with header h, if any) and decodes a 200's body into v.
func getJSON(t *testing.T, url string, h http.Header, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && v != nil {
		require.NoError(t, json.Unmarshal(body, v), "%s", body)
	}
	return resp
}

type statsReply struct {
	Hits, Misses, Computed int64
	SharedWaits            int64   `json:"shared_waits"`
	HitRatio               float64 `json:"hit_ratio"`
}

func TestReportIsCached(t *testing.T) {
	a, base := startLive(t, testConfig())
	takeOrders(t, a, 4)

	// Without a cache, every request computes the report.
	var r1, r2 report
	getJSON(t, base+"/api/report/uncached", nil, &r1)
	getJSON(t, base+"/api/report/uncached", nil, &r2)
	assert.Equal(t, int64(2), a.computed.Load())
	assert.Equal(t, 4, r1.Orders)
	assert.Positive(t, r1.Cents)

	// With cache.GetOrLoad, the first computes it and the second gets the
	// same report from the cache.
	getJSON(t, base+"/api/report", nil, &r1)
	getJSON(t, base+"/api/report", nil, &r2)
	assert.Equal(t, int64(3), a.computed.Load())
	assert.Equal(t, r1, r2)
	var s statsReply
	getJSON(t, base+"/api/stats", nil, &s)
	assert.Equal(t, statsReply{Hits: 1, Misses: 1, Computed: 3, HitRatio: 0.5}, s)

	// cache.Middleware keeps the response, with an ETag: asking again with
	// it gets 304 and no body; neither computes the report again.
	resp := getJSON(t, base+"/api/report/http", nil, &r1)
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	assert.Equal(t, int64(4), a.computed.Load())
	resp = getJSON(t, base+"/api/report/http", http.Header{"If-None-Match": {etag}}, nil)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp = getJSON(t, base+"/api/report/http", nil, &r2)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, r1, r2)
	assert.Equal(t, int64(4), a.computed.Load())

	// Forgetting the report makes the next request compute it again, with
	// the orders taken since.
	takeOrders(t, a, 1)
	resp, err := http.Post(base+"/api/report/forget", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	getJSON(t, base+"/api/report", nil, &r1)
	assert.Equal(t, int64(5), a.computed.Load())
	assert.Equal(t, 5, r1.Orders)
}

// A hundred requests for a report that is not cached: one computation,
// and everyone gets its result.
func TestStampede(t *testing.T) {
	a, base := startLive(t, testConfig())
	takeOrders(t, a, 3)
	const n = 100
	var wg sync.WaitGroup
	start := make(chan struct{})
	reports := make([]report, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := http.Get(base + "/api/report")
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs[i] = errors.New(resp.Status)
				return
			}
			errs[i] = json.NewDecoder(resp.Body).Decode(&reports[i])
		})
	}
	close(start)
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	assert.Equal(t, int64(1), a.computed.Load(), "the report was computed once")
	for _, r := range reports {
		assert.Equal(t, reports[0], r)
	}
	var s statsReply
	getJSON(t, base+"/api/stats", nil, &s)
	assert.Equal(t, int64(n-1), s.Hits+s.SharedWaits, "the others waited for that computation or hit its result: %+v", s)
}

// A page that comes back to a restarted server (in memory: history gone)
// is told with rtkit-reset before the new orders.
func TestRestartedServerSaysReset(t *testing.T) {
	old, oldBase := startLive(t, testConfig())
	events := subscribe(t, oldBase+"/events?topic=orders", sse.ClientOptions{})
	waitStreams(t, old, 1)
	takeOrders(t, old, 2)
	nextOrder(t, events)
	_, lastID := nextOrder(t, events)

	a, base := startLive(t, testConfig())
	events = subscribe(t, base+"/events?topic=orders", sse.ClientOptions{LastEventID: lastID})
	select {
	case e := <-events:
		assert.Equal(t, sse.ResetEvent, e.Type)
		assert.JSONEq(t, `["orders"]`, string(e.Data))
	case <-time.After(10 * time.Second):
		t.Fatal("no reset")
	}
	waitStreams(t, a, 1)
	takeOrders(t, a, 1)
	o, _ := nextOrder(t, events)
	assert.Equal(t, int64(1), o.Seq)
}
