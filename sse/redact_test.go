package sse

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Subscribe never logs (or returns) a credential of its URL.
func TestSubscribeRedactsCredentials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = Subscribe(ctx, "http://ada:pa55@"+addr+"/events?topic=a&token=s3cret", ClientOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, func(Event) error { return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, logs.String(), "reconnecting")
	require.NotContains(t, logs.String(), "s3cret")
	require.NotContains(t, logs.String(), "pa55")

	err = Subscribe(context.Background(), "http://h/\x7f?token=s3cret", ClientOptions{}, func(Event) error { return nil })
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}
