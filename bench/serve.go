package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/centrifugal/centrifuge"
	"github.com/olahol/melody"
	"github.com/rtkit/rtkit/realtime"
)

// The realtime and sse suites run each server in a child process (bench
// -serve NAME), so that the server's memory and CPU profiles hold nothing
// of the load generator. The child prints its listen address on stdout and
// serves:
//
//	/ws            a realtime server's WebSocket endpoint
//	/events        an SSE server's event streams (serve_sse.go)
//	/publish       POST: the server publishes the body to the bench room
//	               (topic) with its own server-side call (serve_sse.go)
//	/debug/mem     memMeasure after runtime.GC, as JSON
//	/debug/stats   the server's own counters (slow consumers, drops), as JSON
//	/debug/usage   the process's CPU time and bytes written (steady.go), as JSON
//	/debug/pprof/  net/http/pprof
//
// It exits when its stdin closes, that is when the parent goes.

// benchRoom is the room (channel) of the fanout and latency workloads.
const benchRoom = "bench"

// memMeasure is what /debug/mem reports.
type memMeasure struct {
	HeapInuse    uint64
	HeapAlloc    uint64 // live objects, after the GC: HeapInuse less the free room in in-use spans
	StackInuse   uint64
	NumGoroutine int
}

// server is one server under test.
type server struct {
	// routes are its endpoints, by ServeMux pattern.
	routes map[string]http.Handler
	// stats returns counters of trouble: slow consumers, drops, errors.
	stats func() map[string]int64
}

func serveChild(name, addr string) error {
	srv, err := newServer(name)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	for pattern, h := range srv.routes {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("GET /debug/mem", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, memMeasure{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse, NumGoroutine: runtime.NumGoroutine()})
	})
	mux.HandleFunc("GET /debug/usage", serveUsage)
	mux.HandleFunc("GET /debug/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.stats())
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	return (&http.Server{Handler: mux}).Serve(ln)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ws is the routes of a WebSocket server: its endpoint, and POST /publish
// calling publish, the server's own publish to every member of the bench
// room (lat50s).
func ws(h http.Handler, publish func(ctx context.Context, data []byte) error) (map[string]http.Handler, func() int64) {
	pub, failed := publishHandler(publish)
	return map[string]http.Handler{"/ws": h, "POST /publish": pub}, failed
}

func newServer(name string) (*server, error) {
	switch name {
	case "rtkit":
		return newRtkitServer(false), nil
	case "rtkit-deflate":
		return newRtkitServer(true), nil
	case "centrifuge":
		return newCentrifugeServer()
	case "melody":
		return newMelodyServer(), nil
	case "sse/rtkit":
		return newRtkitSSEServer(), nil
	case "sse/go-sse":
		return newGoSSEServer(), nil
	case "sse/r3labs-sse":
		return newR3labsSSEServer(), nil
	}
	return nil, fmt.Errorf("unknown server %q", name)
}

// newRtkitServer is a realtime.Hub with the inbound rate limit lifted (the
// publisher sends far more than an interactive client) and the default
// send queue. With deflate (server "rtkit-deflate", not in the default
// list), it allows permessage-deflate and compresses every frame of 64
// bytes or more (the default threshold, 512, would leave the one-message
// frames of lat50 as they are); its clients ask for it.
func newRtkitServer(deflate bool) *server {
	opts := realtime.Options{
		OriginPatterns: []string{"*"},
		InboundRate:    1e6,
		InboundBurst:   1e6,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if deflate {
		opts.Compression, opts.CompressionThreshold = true, 64
	}
	hub := realtime.NewHub(opts)
	routes, pubFailed := ws(hub, func(ctx context.Context, data []byte) error {
		_, err := hub.Publish(ctx, benchRoom, json.RawMessage(data))
		return err
	})
	return &server{routes: routes, stats: func() map[string]int64 {
		s := hub.Stats()
		return map[string]int64{"slow_consumers": s.SlowConsumers, "rate_limited": s.RateLimited,
			"info_frames_out": s.FramesOut, "info_objects_out": s.ObjectsOut, "publish_failed": pubFailed()}
	}}
}

// newCentrifugeServer is a centrifuge Node with its in-memory broker and
// default options, whose handlers let every connection subscribe and
// publish; clients speak its JSON protocol.
func newCentrifugeServer() (*server, error) {
	node, err := centrifuge.New(centrifuge.Config{
		LogLevel: centrifuge.LogLevelWarn,
		LogHandler: func(e centrifuge.LogEntry) {
			fmt.Fprintf(os.Stderr, "centrifuge: %s %v\n", e.Message, e.Fields)
		},
	})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	disconnects := map[string]int64{}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		c.OnPublish(func(e centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
		c.OnDisconnect(func(e centrifuge.DisconnectEvent) {
			mu.Lock()
			disconnects["disconnect_"+e.Disconnect.Reason]++
			mu.Unlock()
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	h := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		CheckOrigin: func(*http.Request) bool { return true },
	})
	routes, pubFailed := ws(h, func(ctx context.Context, data []byte) error {
		_, err := node.Publish(benchRoom, data)
		return err
	})
	return &server{routes: routes, stats: func() map[string]int64 {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int64, len(disconnects)+1)
		for k, v := range disconnects {
			out[k] = v
		}
		out["publish_failed"] = pubFailed()
		return out
	}}, nil
}

// newMelodyServer is a melody instance with its defaults that broadcasts
// every message a client sends to every session.
func newMelodyServer() *server {
	m := melody.New()
	var dropped, failed atomic.Int64
	m.HandleMessage(func(s *melody.Session, msg []byte) {
		_ = m.Broadcast(msg)
	})
	m.HandleError(func(s *melody.Session, err error) {
		if errors.Is(err, melody.ErrMessageBufferFull) {
			dropped.Add(1)
		} else {
			failed.Add(1)
		}
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = m.HandleRequest(w, r)
	})
	routes, pubFailed := ws(h, func(_ context.Context, data []byte) error { return m.Broadcast(data) })
	return &server{routes: routes, stats: func() map[string]int64 {
		return map[string]int64{"buffer_full_drops": dropped.Load(), "session_errors": failed.Load(),
			"publish_failed": pubFailed()}
	}}
}
