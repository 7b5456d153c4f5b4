package realtime

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncBuffer is a log sink tests read while the client writes.
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

// A token in the URL never shows in Dial's error, nor in what the client
// logs while it reconnects.
func TestDialRedactsCredentials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens: every dial fails
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Dial(ctx, "ws://ada:pa55@"+addr+"/ws?token=s3cret&room=x", DialOptions{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.NotContains(t, err.Error(), "pa55")
	require.Contains(t, err.Error(), "token=xxxxx")

	h, url := testHub(t, Options{Authenticate: bearer})
	var logs syncBuffer
	c, err := Dial(ctx, url+"?token=s3cret", DialOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	defer c.Close()
	h.closing.Store(true) // refuse reconnects with 503
	dropUser(h, "s3cret")
	waitFor(t, "a failed reconnect logged", func() bool { return strings.Contains(logs.String(), "reconnect failed") })
	h.closing.Store(false)
	require.NotContains(t, logs.String(), "token=s3cret")
}
