package redistest_test

import (
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
)

func TestStartClusterWith_failover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: time.Second})
	if n := len(cl.Nodes()); n != 6 {
		t.Fatalf("len(Nodes()) = %d, want 6", n)
	}
	c := cl.Client(t)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := cl.Primary(t, "k")
	start := time.Now()
	old.Kill(t)
	for cl.Primary(t, "k") == old {
		if time.Since(start) > 20*time.Second {
			t.Fatal("no replica took over within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("replica promoted %v after the kill", time.Since(start).Round(time.Millisecond))
}

func TestStartSentinel_failover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	c := g.Client(t)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: without WAIT the kill may come before
	// the replica has the key, and the promoted replica rightly lacks it.
	if n, err := c.Do(t.Context(), "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("WAIT for the replica: %d replicas, %v", n, err)
	}
	old := g.Primary(t)
	if old != g.Nodes()[0] {
		t.Fatalf("primary %s, want the first node %s", old.Addr(), g.Nodes()[0].Addr())
	}
	start := time.Now()
	old.Kill(t)
	for g.Primary(t) == old {
		if time.Since(start) > 30*time.Second {
			t.Fatal("no failover within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("replica promoted %v after the kill", time.Since(start).Round(time.Millisecond))
	if got, err := c.Get(t.Context(), "k").Result(); err != nil || got != "v" {
		t.Errorf("GET through the failover client after the failover = %q, %v", got, err)
	}
}
