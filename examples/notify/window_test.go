package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mailLog records the mails the log-only mailer writes (SMTP_ADDR unset).
type mailLog struct {
	mu    sync.Mutex
	mails []string // "to: subject: body"
}

func (l *mailLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *mailLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *mailLog) WithGroup(string) slog.Handler            { return l }
func (l *mailLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "mail not sent") {
		return nil
	}
	var parts []string
	r.Attrs(func(a slog.Attr) bool { parts = append(parts, a.Value.String()); return true })
	l.mu.Lock()
	l.mails = append(l.mails, strings.Join(parts, ": "))
	l.mu.Unlock()
	return nil
}

func (l *mailLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.mails...)
}

// In a synctest bubble the clock moves only when every goroutine waits, so
// the batching window plays out in fake time, exactly: three events 10s
// apart for Ada, who is offline, make one mail when the minute from the
// first ends; a fourth starts a new batch. Bob left 30s before his event:
// his mail waits until he has been away OFFLINE_AFTER.
func TestBatchingWindowInFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := loadConfig(env("BATCH_WINDOW", "1m", "OFFLINE_AFTER", "2m"))
		require.NoError(t, err)
		mails := &mailLog{}
		a := newApp(cfg, slog.New(mails))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.runner.Run(ctx) }()
		h := a.handler()
		post := func(to, text string) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", "/api/events", strings.NewReader(`{"kind":"orders","text":"`+text+`","to":"`+to+`"}`)))
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		}
		wait := func(d time.Duration) {
			time.Sleep(d)
			synctest.Wait()
		}

		post("ada", "first")
		wait(10 * time.Second)
		post("ada", "second")
		wait(10 * time.Second)
		post("ada", "third")
		wait(39 * time.Second)
		assert.Empty(t, mails.all(), "59s: the window is still open")
		wait(2 * time.Second)
		got := mails.all()
		require.Len(t, got, 1, "61s: one mail")
		for _, text := range []string{"ada@example.com", "3 new notification(s)", "first", "second", "third"} {
			assert.Contains(t, got[0], text)
		}

		post("ada", "fourth") // a new batch, due a minute from now
		a.setOnline("bob", +1)
		wait(30 * time.Second)
		a.setOnline("bob", -1) // Bob leaves at 91s
		wait(30 * time.Second)
		post("bob", "for bob") // at 121s: due when Bob has been away 2m, at 211s
		wait(time.Second)
		require.Len(t, mails.all(), 2, "122s: Ada's second batch")
		assert.Contains(t, mails.all()[1], "1 new notification(s)")
		assert.Contains(t, mails.all()[1], "fourth")
		wait(88 * time.Second)
		assert.Len(t, mails.all(), 2, "210s: Bob has been away less than 2m")
		wait(2 * time.Second)
		require.Len(t, mails.all(), 3, "212s: Bob's mail")
		assert.Contains(t, mails.all()[2], "for bob")

		cancel()
		require.NoError(t, <-done)
		require.NoError(t, a.hub.Shutdown(t.Context()))
		require.NoError(t, a.events.Shutdown(t.Context()))
		require.NoError(t, a.bp.Close())
	})
}
