package sse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testBroker(t testing.TB, opts Options) (*Broker, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := NewBroker(opts)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Shutdown(ctx))
		srv.Close()
	})
	return b, srv.URL
}

// events collects what a Subscribe client receives, in the background.
type events struct {
	mu     sync.Mutex
	got    []Event
	cancel context.CancelFunc
	done   chan error
}

func subscribe(t testing.TB, url string, opts ClientOptions) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ev := &events{cancel: cancel, done: make(chan error, 1)}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	go func() {
		ev.done <- Subscribe(ctx, url, opts, func(e Event) error {
			ev.mu.Lock()
			ev.got = append(ev.got, e)
			ev.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-ev.done
	})
	return ev
}

func (ev *events) list() []Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]Event(nil), ev.got...)
}

func (ev *events) count() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.got)
}

func (ev *events) data(typ string) []string {
	var out []string
	for _, e := range ev.list() {
		if e.Type == typ {
			out = append(out, string(e.Data))
		}
	}
	return out
}

func (ev *events) waitData(t testing.TB, typ string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := ev.data(typ)
		if len(d) >= n {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d %q events, want %d: %q", len(d), typ, n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func publishN(t testing.TB, b *Broker, topic string, from, n int) []string {
	t.Helper()
	var out []string
	for i := from; i < from+n; i++ {
		s := fmt.Sprintf("%s-%d", topic, i)
		_, err := b.Publish(context.Background(), topic, Event{Data: []byte(s)})
		require.NoError(t, err)
		out = append(out, s)
	}
	return out
}

func TestStreamHeadersAndEvents(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{})
	resp, err := http.Get(url + "?topic=news")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
	assert.Empty(t, resp.Header.Get("Content-Encoding"))
	p := NewParser(resp.Body, 0)
	first, err := p.Next()
	require.NoError(t, err)
	assert.Nil(t, first.Data, "the stream starts with its retry hint and position")
	assert.Equal(t, 2*time.Second, first.Retry)

	_, err = b.Publish(context.Background(), "news", Event{Type: "headline", Data: []byte("line 1\nline 2\r\nline 3")})
	require.NoError(t, err)
	e, err := p.Next()
	require.NoError(t, err)
	assert.Equal(t, "headline", e.Type)
	assert.Equal(t, "line 1\nline 2\nline 3", string(e.Data))
	assert.NotEmpty(t, e.ID)

	big := strings.Repeat("y", 300<<10)
	_, err = b.Publish(context.Background(), "news", Event{Data: []byte(big)})
	require.NoError(t, err)
	e, err = p.Next()
	require.NoError(t, err)
	assert.Equal(t, big, string(e.Data), "events of any size")

	_, err = b.Publish(context.Background(), "news", Event{Type: "bad\ntype"})
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{
		Authorize: func(r *http.Request, topic string) error {
			if strings.HasPrefix(topic, "private:") && r.Header.Get("Authorization") != "Bearer admin" {
				return errors.New("no")
			}
			return nil
		},
		MaxTopics: 3,
	})
	for _, tc := range []struct {
		query  string
		method string
		status int
	}{
		{"", "GET", http.StatusBadRequest},
		{"?topic=a&topic=b&topic=c&topic=d", "GET", http.StatusBadRequest},
		{"?topic=has%20space", "GET", http.StatusBadRequest},
		{"?topic=public&topic=private:x", "GET", http.StatusForbidden},
		{"?topic=public", "POST", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.query, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode, "%s %s", tc.method, tc.query)
	}
	// The Go client gives up on a refusal, as EventSource does.
	err := Subscribe(context.Background(), url+"?topic=private:x", ClientOptions{}, func(Event) error { return nil })
	assert.ErrorIs(t, err, ErrStreamRefused)
	// With credentials, the private topic streams.
	subscribe(t, url+"?topic=private:x", ClientOptions{Header: http.Header{"Authorization": {"Bearer admin"}}})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
}

func TestMultiTopicResumeAtTheSeam(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{Retry: 10 * time.Millisecond})
	// Publish to three topics continuously while a client connects,
	// disconnects and resumes again and again.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pubMu sync.Mutex
	published := map[string][]string{}
	for _, topic := range []string{"a", "b", "c"} {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				s := fmt.Sprintf("%s-%d", topic, i)
				if _, err := b.Publish(context.Background(), topic, Event{Data: []byte(s)}); err != nil {
					t.Error(err)
					return
				}
				pubMu.Lock()
				published[topic] = append(published[topic], s)
				pubMu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	var got []string
	lastID := ""
	for round := range 8 {
		cctx, cancel := context.WithCancel(context.Background())
		n := 0
		err := Subscribe(cctx, url+"?topic=c&topic=a&topic=b", ClientOptions{LastEventID: lastID}, func(e Event) error {
			if e.Type == ResetEvent {
				t.Errorf("round %d: unexpected reset %s", round, e.Data)
			}
			got = append(got, string(e.Data))
			lastID = e.ID
			if n++; n == 40 {
				cancel() // drop the connection mid-stream
			}
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
	}
	stop()
	wg.Wait()
	// Per topic, what the client got is exactly a prefix of what was
	// published: no gap, no duplicate, across 8 resumes.
	per := map[string][]string{}
	for _, s := range got {
		topic, _, _ := strings.Cut(s, "-")
		per[topic] = append(per[topic], s)
	}
	for topic, seq := range per {
		require.NotEmpty(t, seq)
		// The first connection starts live, so the client's sequence
		// starts somewhere in the published one.
		start := slices.Index(published[topic], seq[0])
		require.GreaterOrEqual(t, start, 0)
		assert.Equal(t, published[topic][start:start+len(seq)], seq, "topic %s", topic)
	}
	assert.Len(t, per, 3)
}

func TestResetWhenHistoryIsGone(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{HistorySize: 5})
	t.Cleanup(func() { _ = bp.Close() })
	b, url := testBroker(t, Options{Backplane: bp})
	publishN(t, b, "t", 0, 3)
	ev := subscribe(t, url+"?topic=t", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	want := publishN(t, b, "t", 3, 2)
	assert.Equal(t, want, ev.waitData(t, "", 2))
	lastID := ev.list()[len(ev.list())-1].ID
	ev.cancel()

	// While the client is away, more is published than history keeps.
	publishN(t, b, "t", 5, 20)
	again := subscribe(t, url+"?topic=t", ClientOptions{LastEventID: lastID})
	resets := again.waitData(t, ResetEvent, 1)
	assert.Equal(t, []string{`["t"]`}, resets)
	assert.Equal(t, []string{"t-20", "t-21", "t-22", "t-23", "t-24"}, again.waitData(t, "", 5), "then what history still has")

	// A Last-Event-ID of another topic set cannot be resumed either.
	other := subscribe(t, url+"?topic=t&topic=u", ClientOptions{LastEventID: lastID})
	assert.Equal(t, []string{`["t","u"]`}, other.waitData(t, ResetEvent, 1))
}

func TestResumeByQueryParameter(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{})
	publishN(t, b, "t", 0, 1)
	first := subscribe(t, url+"?topic=t", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	publishN(t, b, "t", 1, 1)
	first.waitData(t, "", 1)
	id := first.list()[len(first.list())-1].ID
	first.cancel()
	missed := publishN(t, b, "t", 2, 3)
	ev := subscribe(t, url+"?topic=t&"+LastEventIDParam+"="+id, ClientOptions{})
	assert.Equal(t, missed, ev.waitData(t, "", 3))
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	t.Parallel()
	// A long write timeout, so that the queue overflows before a write
	// times out (the other way a stuck client is dropped).
	b, url := testBroker(t, Options{QueueBytes: 256 << 10, WriteTimeout: time.Minute})
	// A client that stops reading: its socket buffers fill, then its queue.
	// (Its timeout only bounds the test if something goes wrong.)
	slowClient := &http.Client{Timeout: time.Minute}
	resp, err := slowClient.Get(url + "?topic=t")
	require.NoError(t, err)
	defer resp.Body.Close()
	fast := subscribe(t, url+"?topic=t", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 2 })
	pad := strings.Repeat("p", 4<<10)
	var want []string
	for i := 0; b.Stats().Dropped == 0; i++ {
		require.Less(t, i, 50000, "the slow subscriber was never dropped")
		s := fmt.Sprintf("%d %s", i, pad)
		_, err := b.Publish(context.Background(), "t", Event{Data: []byte(s)})
		require.NoError(t, err)
		want = append(want, s)
		if i%8 == 7 {
			waitFor(t, func() bool { return fast.count() >= len(want)-8 })
		}
	}
	assert.Equal(t, want, fast.waitData(t, "", len(want)), "the others got every event, in order")
	// The slow one, reading again, finds its stream ended (with a retry
	// hint when its socket had room for one); resuming from its last id,
	// it gets everything after.
	p := NewParser(resp.Body, 0)
	var lastID string
	for {
		if _, err := p.Next(); err != nil {
			break
		}
		lastID = p.LastEventID()
	}
	require.NotEmpty(t, lastID)
	again := subscribe(t, url+"?topic=t", ClientOptions{LastEventID: lastID})
	got := again.waitData(t, "", 1)
	i := 0
	for want[i] != got[0] {
		i++
	}
	assert.Equal(t, want[i:], again.waitData(t, "", len(want)-i))
}

func TestTwoBrokersOnRedis(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	node := func() (*Broker, string) {
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: db.Client(t), Prefix: db.Prefix, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bp.Close() })
		return testBroker(t, Options{Backplane: bp})
	}
	a, _ := node()
	b, urlB := node()
	ev := subscribe(t, urlB+"?topic=feed", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	want := publishN(t, a, "feed", 0, 20)
	assert.Equal(t, want, ev.waitData(t, "", 20), "published on A, streamed from B")
}

func TestShutdownTellsClientsToComeBack(t *testing.T) {
	t.Parallel()
	b := NewBroker(Options{Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(b)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "?topic=t")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := NewParser(resp.Body, 0)
	_, err = p.Next()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.Shutdown(ctx))
	e, err := p.Next()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, e.Retry, 2*time.Second, "a retry hint, not a status that stops EventSource")
	_, err = p.Next()
	assert.Error(t, err, "then the stream ends")
	// New streams get the hint too, with 200.
	resp2, err := http.Get(srv.URL + "?topic=t")
	require.NoError(t, err)
	defer resp2.Body.Close()
	assert.Equal(t, http.StatusOK, resp2.StatusCode)
	e, err = NewParser(resp2.Body, 0).Next()
	require.NoError(t, err)
	assert.Positive(t, e.Retry)
	require.NoError(t, b.Shutdown(ctx), "idempotent")
}

func TestHubMessagesStreamAsTypedEvents(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	b, url := testBroker(t, Options{Backplane: bp})
	ev := subscribe(t, url+"?topic=lobby", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	// What the realtime hub publishes for a chat message.
	_, err := bp.Publish(context.Background(), "lobby", []byte(hubMark+`{"op":"msg","from":{"user":"ada"},"data":"hi"}`), rtkit.PublishOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{`{"op":"msg","from":{"user":"ada"},"data":"hi"}`}, ev.waitData(t, "msg", 1))
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A stream of an empty topic announces the position "0-0", not an empty id
// (after which clients send no Last-Event-ID), so what is published while
// the client is away reaches it on reconnect.
func TestEmptySingleTopicResumes(t *testing.T) {
	b, url := testBroker(t, Options{})
	resp, err := http.Get(url + "?topic=fresh")
	require.NoError(t, err)
	p := NewParser(resp.Body, 0)
	first, err := p.Next()
	require.NoError(t, err)
	last := p.LastEventID()
	require.Equal(t, "0-0", first.ID)
	resp.Body.Close()

	_, err = b.Publish(context.Background(), "fresh", Event{Data: []byte("missed")})
	require.NoError(t, err)

	// Reconnect as EventSource / sse.Client do: Last-Event-ID only if non-empty.
	req, _ := http.NewRequest("GET", url+"?topic=fresh", nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req = req.WithContext(ctx)
	resp2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp2.Body.Close()
	p2 := NewParser(resp2.Body, 0)
	_, err = p2.Next() // retry + position
	require.NoError(t, err)
	done := make(chan Event, 1)
	go func() {
		e, err := p2.Next()
		if err == nil {
			done <- e
		}
		close(done)
	}()
	_, err = b.Publish(context.Background(), "fresh", Event{Data: []byte("live")})
	require.NoError(t, err)
	e := <-done
	require.Equal(t, "missed", string(e.Data), "first event after reconnect (type %q)", e.Type)
}
