package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Logs: log/slog, text by default or one JSON object a line with
// LOG_FORMAT=json (what a log collector wants), at LOG_LEVEL (debug,
// info, warn or error; default info). Every HTTP request is logged once,
// when it ends, with its request ID: the X-Request-ID header the client
// (or nginx, see nginx.conf) sent, or a new one, echoed in the response.

// newLogger is the logger LOG_FORMAT and LOG_LEVEL ask for, writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", level)
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT must be text or json, not %q", format)
}

// loggerFromEnv is newLogger on stderr from LOG_FORMAT and LOG_LEVEL.
func loggerFromEnv() (*slog.Logger, error) {
	return newLogger(os.Stderr, os.Getenv("LOG_FORMAT"), os.Getenv("LOG_LEVEL"))
}

// requestIDHeader carries a request's ID in and out.
const requestIDHeader = "X-Request-ID"

// requestID is the client's X-Request-ID if it is a sensible one (1 to
// 64 letters, digits, '-', '_' or '.'), or a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get(requestIDHeader); id != "" && len(id) <= 64 && strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == "" {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// probeRoutes are logged at debug level: orchestrators call them every
// few seconds.
var probeRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// logRequest logs one finished request.
func logRequest(log *slog.Logger, r *http.Request, rec *recorder, id string, took time.Duration) {
	level := slog.LevelInfo
	if probeRoutes[r.Pattern] {
		level = slog.LevelDebug
	}
	if !log.Enabled(r.Context(), level) {
		return
	}
	log.LogAttrs(r.Context(), level, "http request",
		slog.String("request_id", id),
		slog.String("method", r.Method),
		slog.String("route", routeLabel(r)),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status()),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", took),
		slog.String("remote", r.RemoteAddr),
	)
}

// routeLabel is the pattern that served r ("GET /api/login"), or "other"
// for a request no route matched: a bounded set, fit for a metric label.
func routeLabel(r *http.Request) string {
	if r.Pattern == "" {
		return "other"
	}
	return r.Pattern
}

// recorder is a ResponseWriter that remembers the status and the bytes
// written. It keeps what WebSockets (Hijack) and SSE (Flush, and the
// deadlines of http.ResponseController, through Unwrap) need.
type recorder struct {
	http.ResponseWriter
	code     int
	bytes    int64
	hijacked bool
	// upgrade: the request asks for a WebSocket. The SSE broker hijacks
	// its streams too, but those answer 200.
	upgrade bool
	// streamed is when the response turned into a stream (its first
	// Flush, or the Hijack of a WebSocket upgrade); zero for the others.
	streamed time.Time
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered (SSE events).
func (w *recorder) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.streamed.IsZero() {
		w.streamed = time.Now()
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket upgrades, and SSE streams,
// which the broker writes itself after their 200 head).
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked, w.streamed = true, time.Now()
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the response's status: 101 for an upgraded WebSocket, 200
// for an SSE stream the broker took over and when the handler wrote
// nothing.
func (w *recorder) status() int {
	switch {
	case w.hijacked && w.upgrade:
		return http.StatusSwitchingProtocols
	case w.hijacked:
		return http.StatusOK
	case w.code == 0:
		return http.StatusOK
	}
	return w.code
}
