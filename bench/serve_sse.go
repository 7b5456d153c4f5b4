package main

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"

	r3sse "github.com/r3labs/sse/v2"
	"github.com/rtkit/rtkit/sse"
	gosse "github.com/tmaxmax/go-sse"
)

// The sse suite's servers, each with its library's defaults and the setup
// its documentation shows. Each serves its event streams on /events and
// publishes the body of every POST /publish to the bench topic with its
// own server-side publish call; SSE has no client-side publish.

// publishHandler answers POST /publish by calling publish with the body;
// the stats it returns count the publishes that failed.
func publishHandler(publish func(ctx context.Context, data []byte) error) (http.Handler, func() int64) {
	var failed atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err == nil {
			err = publish(r.Context(), data)
		}
		if err != nil {
			failed.Add(1)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return h, failed.Load
}

// newRtkitSSEServer is an sse.Broker with its zero Options: the topics of
// the "topic" query parameters, a memory backplane with its default
// history, 1 MiB of queue per stream.
func newRtkitSSEServer() *server {
	b := sse.NewBroker(sse.Options{})
	pub, failed := publishHandler(func(ctx context.Context, data []byte) error {
		_, err := b.Publish(ctx, benchRoom, sse.Event{Data: data})
		return err
	})
	return &server{
		routes: map[string]http.Handler{"GET /events": b, "POST /publish": pub},
		stats: func() map[string]int64 {
			s := b.Stats()
			return map[string]int64{"publish_errors": failed(), "dropped_streams": s.Dropped,
				"info_streams": int64(s.Streams), "info_published": s.Published, "info_written": s.Written}
		},
	}
}

// newGoSSEServer is a go-sse Server with its default provider (Joe, no
// replayer) whose OnSession streams the topics of the "topic" query
// parameters, as in the library's own example.
func newGoSSEServer() *server {
	s := &gosse.Server{
		OnSession: func(w http.ResponseWriter, r *http.Request) ([]string, bool) {
			return r.URL.Query()["topic"], true
		},
	}
	pub, failed := publishHandler(func(ctx context.Context, data []byte) error {
		m := &gosse.Message{}
		m.AppendData(string(data))
		return s.Publish(m, benchRoom)
	})
	return &server{
		routes: map[string]http.Handler{"GET /events": s, "POST /publish": pub},
		stats:  func() map[string]int64 { return map[string]int64{"publish_errors": failed()} },
	}
}

// newR3labsSSEServer is an r3labs/sse Server from New() (its defaults: a
// 1,024-event buffer per stream, AutoReplay on, so the stream keeps every
// event to replay it to new subscribers) with the bench stream created up
// front, as its README shows; clients name it with the "stream" query
// parameter.
func newR3labsSSEServer() *server {
	s := r3sse.New()
	s.CreateStream(benchRoom)
	pub, failed := publishHandler(func(ctx context.Context, data []byte) error {
		s.Publish(benchRoom, &r3sse.Event{Data: data})
		return nil
	})
	return &server{
		routes: map[string]http.Handler{"GET /events": s, "POST /publish": pub},
		stats:  func() map[string]int64 { return map[string]int64{"publish_errors": failed()} },
	}
}
