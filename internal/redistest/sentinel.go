package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of a [Sentinel] group know
// their primary by.
const SentinelMaster = "rtkit"

// Sentinel is a private Sentinel group on loopback ports: a primary, one
// replica, and three sentinels (quorum 2) that declare the primary down
// after 1s without an answer and then promote the replica. It keeps
// nothing on disk. Its methods are safe for concurrent use.
type Sentinel struct {
	nodes     []*Server // the primary and the replica, as started
	sentinels []string  // sentinel addresses
}

// StartSentinel starts the group from redis-server and redis-sentinel and
// waits until the replica is in sync and every sentinel knows the replica
// and the other two sentinels, so that killing the primary at once fails
// over. Everything is stopped when t ends. StartSentinel skips t (fails it
// when [Required]) if redis-server or redis-sentinel is not on $PATH.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	lookPath(t, "redis-server", "redis-sentinel")
	dir := t.TempDir()
	g := &Sentinel{}
	var procs []*process
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop()
		}
		for _, s := range g.nodes {
			s.Stop(t)
		}
	})
	primary := startNode(t, dir, false)
	_, pport, _ := net.SplitHostPort(primary.addr)
	replica := startNode(t, dir, false, "--replicaof", "127.0.0.1", pport)
	g.nodes = []*Server{primary, replica}

	for i := range 3 {
		port, err := freePort(false)
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\ndir %s\nloglevel warning\n"+
			"sentinel monitor %s 127.0.0.1 %s 2\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 5000\n"+
			"sentinel parallel-syncs %[3]s 1\n", port, dir, SentinelMaster, pport)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := startProcess("redis-sentinel", conf)
		if err != nil {
			t.Fatalf("redistest: starting redis-sentinel: %v", err)
		}
		procs = append(procs, p)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitReady(p, addr, startTimeout); err != nil {
			t.Fatalf("redistest: redis-sentinel on %s: %v; its output:\n%s", addr, err, p.output())
		}
		g.sentinels = append(g.sentinels, addr)
	}
	if err := g.waitReady(30 * time.Second); err != nil {
		t.Fatalf("redistest: sentinel group: %v", err)
	}
	return g
}

// waitReady waits until the replica is in sync and every sentinel sees one
// replica and two other sentinels.
func (g *Sentinel) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := g.ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *Sentinel) ready() error {
	info, err := command(g.nodes[1].addr, time.Second, "INFO", "replication")
	if err != nil || !hasLines(info, []string{"master_link_status:up"}) {
		return fmt.Errorf("replica %s not in sync: %v", g.nodes[1].addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, addr := range g.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		replicas, err1 := sc.Replicas(ctx, SentinelMaster).Result()
		others, err2 := sc.Sentinels(ctx, SentinelMaster).Result()
		_ = sc.Close()
		if err1 != nil || err2 != nil || len(replicas) != 1 || len(others) != 2 {
			return fmt.Errorf("sentinel %s knows %d replicas and %d other sentinels (%v, %v)", addr, len(replicas), len(others), err1, err2)
		}
	}
	return nil
}

// Addrs returns the sentinels' addresses.
func (g *Sentinel) Addrs() []string { return append([]string(nil), g.sentinels...) }

// Nodes returns the primary and the replica, as started.
func (g *Sentinel) Nodes() []*Server { return append([]*Server(nil), g.nodes...) }

// Client returns a new failover client (redis.NewFailoverClient) for the
// group, closed when t ends.
func (g *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: g.Addrs()})
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

// Primary returns the node the sentinels name as primary now. It fails t
// if no sentinel answers.
func (g *Sentinel) Primary(t testing.TB) *Server {
	t.Helper()
	var lastErr error
	for _, addr := range g.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		_ = sc.Close()
		if err != nil || len(hp) != 2 {
			lastErr = fmt.Errorf("%s: %v %v", addr, hp, err)
			continue
		}
		for _, s := range g.nodes {
			if s.addr == net.JoinHostPort(hp[0], hp[1]) {
				return s
			}
		}
		lastErr = fmt.Errorf("%s names %v, not a node of the group", addr, hp)
	}
	t.Fatalf("redistest: sentinel primary: %v", lastErr)
	return nil
}
