package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/rtkit/rtkit/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNew(t *testing.T) {
	t.Parallel()
	var prefix string
	ok := t.Run("child", func(t *testing.T) {
		db := redistest.New(t)
		prefix = db.Prefix
		if !strings.HasPrefix(prefix, "rtkit-test:TestNew/child:") || !strings.HasSuffix(prefix, ":") {
			t.Errorf("Prefix = %q, want rtkit-test:TestNew/child:<random>:", prefix)
		}
		if strings.ContainsAny(prefix, "{}*?[]\\") {
			t.Errorf("Prefix = %q holds a hash tag or glob character", prefix)
		}

		a, b := db.Client(t), db.Client(t)
		if a == b {
			t.Fatal("Client returned the same client twice")
		}
		// More keys than one UNLINK batch.
		pipe := a.Pipeline()
		for i := range 1200 {
			pipe.Set(t.Context(), fmt.Sprintf("%sk%d", prefix, i), "v", 0)
		}
		if _, err := pipe.Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(t.Context(), prefix+"k0").Result()
		if err != nil || got != "v" {
			t.Fatalf("Get = %q, %v; want v", got, err)
		}
	})
	if !ok {
		return
	}
	if prefix == "" {
		t.Skip("no Redis")
	}

	db := redistest.New(t)
	if db.Prefix == prefix {
		t.Fatalf("two calls to New gave the same prefix %q", prefix)
	}
	keys, _, err := db.Client(t).Scan(t.Context(), 0, prefix+"*", 10000).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("after the child's cleanup, %d keys remain under %s, e.g. %q", len(keys), prefix, keys[0])
	}
}

func TestNew_clientsClosed(t *testing.T) {
	t.Parallel()
	var c *redis.Client
	ok := t.Run("child", func(t *testing.T) {
		c = redistest.New(t).Client(t)
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if !ok {
		return
	}
	if c == nil {
		t.Skip("no Redis")
	}
	if err := c.Ping(t.Context()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("Ping after the child's cleanup = %v, want %v", err, redis.ErrClosed)
	}
}

func TestNew_noServer(t *testing.T) {
	if redistest.Required() {
		t.Skip("RTKIT_REQUIRE_REDIS=1 turns the skip under test into a failure")
	}
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1")
	if got := redistest.Addr(); got != "127.0.0.1:1" {
		t.Errorf("Addr() = %q, want 127.0.0.1:1", got)
	}
	var skipped bool
	t.Run("child", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		redistest.New(t)
	})
	if !skipped {
		t.Error("New did not skip without a server")
	}
}

func TestStartServer_restart(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	c := s.Client(t)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	addr := s.Addr()
	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("Addr after Restart = %s, want %s", s.Addr(), addr)
	}
	// The client's pooled connection died with the old process; go-redis
	// retries on a new one.
	if err := c.Get(t.Context(), "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("Get after Restart = %v, want redis.Nil (no persistence)", err)
	}

	s.Stop(t)
	s.Stop(t) // idempotent
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer down.Close()
	if err := down.Ping(t.Context()).Err(); err == nil {
		t.Error("Ping succeeded on a stopped server")
	}

	s.Start(t)
	if err := s.Client(t).Ping(t.Context()).Err(); err != nil {
		t.Errorf("Ping after Start: %v", err)
	}
}

func TestStartCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	if n := len(cl.Addrs()); n != 3 {
		t.Fatalf("len(Addrs()) = %d, want 3", n)
	}
	c := cl.Client(t)

	slots := map[int64]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := c.Set(t.Context(), k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		slot, err := c.ClusterKeySlot(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = true
		if got, err := c.Get(t.Context(), k).Result(); err != nil || got != k {
			t.Errorf("GET %s = %q, %v", k, got, err)
		}
	}
	if len(slots) < 2 {
		t.Errorf("keys landed on %d slot(s), want several", len(slots))
	}

	used := 0
	for _, addr := range cl.Addrs() {
		node := redis.NewClient(&redis.Options{Addr: addr})
		info, err := node.ClusterInfo(t.Context()).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("CLUSTER INFO on %s = %q, %v; want cluster_state:ok", addr, info, err)
		}
		if n, err := node.DBSize(t.Context()).Result(); err == nil && n > 0 {
			used++
		}
		_ = node.Close()
	}
	if used < 2 {
		t.Errorf("keys landed on %d master(s), want several", used)
	}
}

func TestStartServer_pause(t *testing.T) {
	s := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	err := c.Ping(ctx).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ping to a paused server: %v, want a timeout", err)
	}
	s.Resume(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after resume: %v", err)
	}
	s.Pause(t)
	s.Stop(t) // a paused server still stops
	s.Start(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	s.Kill(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping to a killed server succeeded")
	}
}
