package sse

import (
	"bytes"
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

// recorder is a ResponseWriter for streams in a synctest bubble, where
// real sockets cannot be used. It supports flushing; write deadlines are
// not supported, which also exercises the fallback.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	buf    bytes.Buffer
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int)   { r.status = s }
func (r *recorder) Flush()              {}
func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

func TestHeartbeatAndLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(Options{Heartbeat: 15 * time.Second, MaxLifetime: 10 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
		defer b.Shutdown(context.Background())
		rec := &recorder{header: http.Header{}}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequest("GET", "/?topic=t", nil).WithContext(ctx)
		done := make(chan struct{})
		go func() {
			b.ServeHTTP(rec, req)
			close(done)
		}()
		synctest.Wait()
		start := rec.String()
		assert.True(t, strings.HasPrefix(start, "retry: 2000\nid: 0-0\n\n"), "%q", start)

		// Silent for just under the heartbeat: nothing; at it: a comment.
		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, start, rec.String())
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, start+":\n\n", rec.String())

		// An event resets the heartbeat.
		time.Sleep(10 * time.Second)
		_, err := b.Publish(context.Background(), "t", Event{Data: []byte("x")})
		require.NoError(t, err)
		synctest.Wait()
		afterEvent := rec.String()
		assert.Contains(t, afterEvent, "data: x\n\n")
		time.Sleep(14 * time.Second)
		synctest.Wait()
		assert.Equal(t, afterEvent, rec.String(), "no heartbeat 14s after an event")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, afterEvent+":\n\n", rec.String())

		// The stream ends within MaxLifetime ±10%, with a retry hint.
		// 40 s have passed: at 8m40s the stream must still be open (the
		// earliest end is at 9m).
		time.Sleep(8 * time.Minute)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("ended before 90% of MaxLifetime")
		default:
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("still open after 110% of MaxLifetime")
		}
		assert.True(t, strings.HasSuffix(rec.String(), "retry: 2000\n\n"), "%q", rec.String()[len(rec.String())-30:])
	})
}

func TestStreamEndsWhenCredentialsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := time.Now().Add(time.Hour)
		b := NewBroker(Options{Expires: func(*http.Request) time.Time { return exp }, Logger: slog.New(slog.DiscardHandler)})
		defer b.Shutdown(context.Background())
		rec := &recorder{header: http.Header{}}
		done := make(chan struct{})
		go func() {
			b.ServeHTTP(rec, httptest.NewRequest("GET", "/?topic=t", nil))
			close(done)
		}()
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("ended before the credentials expired")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		<-done
	})
}
