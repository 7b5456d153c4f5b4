package redistest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSize is the number of masters in a [Cluster]; three is the fewest
// redis-cli --cluster create accepts.
const clusterSize = 3

// Cluster is a private Redis Cluster of three primaries on loopback ports,
// with the replicas [ClusterOptions] asks for (none by default). It keeps
// nothing on disk. Its methods are safe for concurrent use.
type Cluster struct {
	primaries []*Server // the primaries the cluster was created with
	nodes     []*Server // every node, primaries first
}

// ClusterOptions configure [StartClusterWith]. The zero value gives
// [StartCluster]'s cluster.
type ClusterOptions struct {
	// Replicas is the number of replicas of each primary. Default 0.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a primary may be
	// unreachable before the others mark it failed and its replica takes
	// over. Default Redis's own (15s); failover tests want 1–2s.
	NodeTimeout time.Duration
}

// StartCluster starts three cluster-enabled redis-servers, joins them into
// one cluster with redis-cli and waits until every node reports
// cluster_state:ok. The servers are stopped when t ends. StartCluster skips
// t (fails it when [Required]) if redis-server or redis-cli is not on $PATH.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{})
}

// StartClusterWith is [StartCluster] with options: with Replicas, every
// node reports cluster_state:ok and every replica has finished its first
// sync with its primary when it returns, so a primary killed at once fails
// over.
func StartClusterWith(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	lookPath(t, "redis-server", "redis-cli")
	dir := t.TempDir()
	c := &Cluster{}
	t.Cleanup(func() {
		for _, s := range c.nodes {
			s.Stop(t)
		}
	})
	var extra []string
	if o.NodeTimeout > 0 {
		extra = append(extra,
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			// A replica may take over however long it was cut off.
			"--cluster-replica-validity-factor", "0",
		)
	}
	for range clusterSize * (1 + o.Replicas) {
		c.nodes = append(c.nodes, startNode(t, dir, true, extra...))
	}
	c.primaries = c.nodes[:clusterSize]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// redis-cli makes the first three nodes primaries and the rest their
	// replicas.
	args := append([]string{"--cluster", "create"}, c.addrs(c.nodes)...)
	args = append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v; its output:\n%s", err, out)
	}

	if err := c.waitOK(startTimeout); err != nil {
		t.Fatalf("redistest: cluster %v: %v", c.Addrs(), err)
	}
	return c
}

// waitOK polls CLUSTER INFO on every node until all of them see the whole
// cluster with every slot served, then INFO replication on every replica
// until its link to its primary is up.
func (c *Cluster) waitOK(timeout time.Duration) error {
	want := []string{"cluster_state:ok", fmt.Sprintf("cluster_known_nodes:%d", len(c.nodes))}
	deadline := time.Now().Add(timeout)
	for _, s := range c.nodes {
		for {
			info, err := command(s.addr, time.Second, "CLUSTER", "INFO")
			if err == nil && hasLines(info, want) {
				break
			}
			if time.Now().After(deadline) {
				if err != nil {
					return fmt.Errorf("CLUSTER INFO on %s: %w", s.addr, err)
				}
				return fmt.Errorf("CLUSTER INFO on %s has no %v within %v:\n%s", s.addr, want, timeout, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, s := range c.nodes[clusterSize:] {
		for {
			info, err := command(s.addr, time.Second, "INFO", "replication")
			if err == nil && hasLines(info, []string{"role:slave", "master_link_status:up"}) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("replica %s not in sync within %v: %v\n%s", s.addr, timeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// hasLines reports whether every one of want is a line of info.
func hasLines(info string, want []string) bool {
	lines := strings.Split(strings.ReplaceAll(info, "\r\n", "\n"), "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			return false
		}
	}
	return true
}

// Addrs returns the host:port of each primary the cluster started with.
func (c *Cluster) Addrs() []string { return c.addrs(c.primaries) }

func (c *Cluster) addrs(nodes []*Server) []string {
	addrs := make([]string, len(nodes))
	for i, s := range nodes {
		addrs[i] = s.addr
	}
	return addrs
}

// Nodes returns every node of the cluster, the primaries it started with
// first. Kill, Pause or Stop one to test a failover.
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Client returns a new cluster client seeded with every node, closed when
// t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs(c.nodes)})
	t.Cleanup(func() { closeClient(t, cc) })
	return cc
}

// Primary returns the node that serves key's hash slot now, as CLUSTER
// SLOTS on the first node that answers says. It fails t if no node
// answers or none owns the slot.
func (c *Cluster) Primary(t testing.TB, key string) *Server {
	t.Helper()
	var lastErr error
	for _, s := range c.nodes {
		text, err := command(s.addr, time.Second, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			lastErr = err
			continue
		}
		slot, _ := strconv.Atoi(text)
		rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second})
		//lint:ignore SA1019 CLUSTER SLOTS answers on every Redis the tests may meet (6.2 too); CLUSTER SHARDS needs 7.0
		ranges, err := rdb.ClusterSlots(context.Background()).Result()
		_ = rdb.Close()
		if err != nil {
			lastErr = err
			continue
		}
		for _, r := range ranges {
			if int(r.Start) <= slot && slot <= int(r.End) && len(r.Nodes) > 0 {
				for _, n := range c.nodes {
					if n.addr == r.Nodes[0].Addr {
						return n
					}
				}
			}
		}
		lastErr = fmt.Errorf("no node owns slot %d", slot)
	}
	t.Fatalf("redistest: primary for %q: %v", key, lastErr)
	return nil
}

// MigrateSlot moves the hash slot of key, with its keys, from its primary
// to the primary to, as redis-cli --cluster reshard does: IMPORTING and
// MIGRATING, MIGRATE of every key, then SETSLOT NODE on every primary. It
// fails t on any error. Clients see ASK and TRYAGAIN while it runs, and
// MOVED after.
func (c *Cluster) MigrateSlot(t testing.TB, key string, to *Server) {
	t.Helper()
	ctx := context.Background()
	from := c.Primary(t, key)
	if from == to {
		return
	}
	client := func(s *Server) *redis.Client {
		rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	src, dst := client(from), client(to)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("redistest: migrating the slot of %q from %s to %s: %v", key, from.addr, to.addr, err)
		}
	}
	slot, err := src.ClusterKeySlot(ctx, key).Result()
	must(err)
	srcID, err := src.ClusterMyID(ctx).Result()
	must(err)
	dstID, err := dst.ClusterMyID(ctx).Result()
	must(err)
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	host, port, _ := strings.Cut(to.addr, ":")
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
	}
	// The new owner first, then the old one, then everyone else, as
	// redis-cli does.
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	for _, s := range c.nodes {
		if s == from || s == to || !s.running() {
			continue
		}
		_ = client(s).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err() // replicas refuse; gossip tells them
	}
}

// running reports whether the server's process is up.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Failover makes a replica of primary take over its slots with CLUSTER
// FAILOVER (a manual, coordinated failover: nothing acknowledged is lost)
// and waits until the cluster names the replica as the slots' primary. It
// fails t if primary has no replica or the failover does not complete
// within 20s. It returns the new primary.
func (c *Cluster) Failover(t testing.TB, primary *Server) *Server {
	t.Helper()
	_, port, _ := net.SplitHostPort(primary.addr)
	for _, s := range c.nodes {
		if s == primary || !s.running() {
			continue
		}
		info, err := command(s.addr, time.Second, "INFO", "replication")
		if err != nil || !hasLines(info, []string{"role:slave", "master_port:" + port}) {
			continue
		}
		if _, err := command(s.addr, time.Second, "CLUSTER", "FAILOVER"); err != nil {
			t.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", s.addr, err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := command(s.addr, time.Second, "INFO", "replication")
			if err == nil && hasLines(info, []string{"role:master"}) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: %s did not take over from %s within 20s", s.addr, primary.addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Fatalf("redistest: %s has no replica", primary.addr)
	return nil
}
