package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSize is the number of masters in a [Cluster]; three is the fewest
// redis-cli --cluster create accepts.
const clusterSize = 3

// Cluster is a private Redis Cluster of three masters on loopback ports,
// without replicas. It keeps nothing on disk. Its methods are safe for
// concurrent use.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts three cluster-enabled redis-servers, joins them into
// one cluster with redis-cli and waits until every node reports
// cluster_state:ok. The servers are stopped when t ends. StartCluster skips
// t (fails it when [Required]) if redis-server or redis-cli is not on $PATH.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	lookPath(t, "redis-server", "redis-cli")
	dir := t.TempDir()
	c := &Cluster{}
	t.Cleanup(func() {
		for _, s := range c.nodes {
			s.Stop(t)
		}
	})
	for range clusterSize {
		c.nodes = append(c.nodes, startNode(t, dir, true))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
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
// cluster with every slot served.
func (c *Cluster) waitOK(timeout time.Duration) error {
	want := []string{"cluster_state:ok", fmt.Sprintf("cluster_known_nodes:%d", clusterSize)}
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

// Addrs returns the host:port of each master.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.addr
	}
	return addrs
}

// Client returns a new cluster client seeded with every master, closed when
// t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { closeClient(t, cc) })
	return cc
}
