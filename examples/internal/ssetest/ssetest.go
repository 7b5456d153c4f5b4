// Package ssetest follows a Server-Sent Events stream in the examples'
// tests, as a page's EventSource does, with the library's sse.Subscribe.
//
//	ssetest.Subscribe(t, base+"/events", func(e sse.Event) error {
//		// keep e; runs on the stream's goroutine
//		return nil
//	})
//	// the stream is open: what is published from now on arrives
package ssetest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit/sse"
)

// OpenTimeout bounds the wait for the stream to open.
const OpenTimeout = 10 * time.Second

// Subscribe follows the stream at url until t ends, passing each event to
// handle on the stream's goroutine; it reconnects as EventSource does. It
// returns once the server has answered 200, which an sse.Broker does once
// the stream is subscribed to its topics (EventSource's onopen), and fails
// t if that takes longer than [OpenTimeout]. An error from handle ends the
// stream; that error, or the server refusing the stream, fails t when t
// ends.
func Subscribe(t testing.TB, url string, handle func(sse.Event) error) {
	t.Helper()
	opened := &onOpen{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		opts := sse.ClientOptions{HTTPClient: &http.Client{Transport: opened}, Logger: slog.New(slog.DiscardHandler)}
		ended <- sse.Subscribe(ctx, url, opts, handle)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Errorf("ssetest: the stream of %s ended: %v", url, err)
		}
	})
	select {
	case <-opened.ready:
	case <-time.After(OpenTimeout):
		t.Fatalf("ssetest: the stream of %s did not open", url)
	}
}

// onOpen is a transport that closes ready at the first 200 answer.
type onOpen struct {
	once  sync.Once
	ready chan struct{}
}

func (o *onOpen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		o.once.Do(func() { close(o.ready) })
	}
	return resp, err
}
