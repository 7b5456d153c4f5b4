package rtkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// The replica stops replicating (SIGSTOP, its socket buffers full) while
// the primary acknowledges messages, then the primary dies and the replica is promoted without
// them. A member that had received them live cannot resume after the
// last message it delivered: it gets a gap, then the messages that
// follow. A publisher with MinReplicas gets no acknowledgement for a
// message no replica has, so none of its acknowledged messages is lost.
func TestRedisBackplaneUnreplicatedTailIsAGap(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	ctx := context.Background()
	primary := g.Primary(t)
	var replica *redistest.Server
	for _, s := range g.Nodes() {
		if s != primary {
			replica = s
		}
	}
	sub := openRedis(t, RedisOptions{Client: g.Client(t)})
	plain := openRedis(t, RedisOptions{Client: g.Client(t)})
	safe := openRedis(t, RedisOptions{Client: g.Client(t), MinReplicas: 1})
	recPlain, recSafe := newRecorder(), newRecorder()
	for topic, rec := range map[string]*recorder{"plain": recPlain, "safe": recSafe} {
		s, err := sub.Subscribe(ctx, topic, SubscribeOptions{}, rec)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
	}
	for i := range 3 {
		_, err := plain.Publish(ctx, "plain", fmt.Appendf(nil, "r%d", i), PublishOptions{})
		require.NoError(t, err)
		_, err = safe.Publish(ctx, "safe", fmt.Appendf(nil, "r%d", i), PublishOptions{})
		require.NoError(t, err, "a replica confirms")
	}
	recPlain.waitN(t, 3)
	recSafe.waitN(t, 3)

	replica.Pause(t)
	// Fill the socket buffers between the primary and its paused replica,
	// so that what follows stays in the primary's memory and dies with it.
	admin := g.Client(t)
	junk := strings.Repeat("j", 1<<20)
	for i := range 48 {
		require.NoError(t, admin.Set(ctx, fmt.Sprintf("junk:%d", i), junk, 0).Err())
	}
	var unreplicated []ID
	for i := range 3 {
		id, err := plain.Publish(ctx, "plain", fmt.Appendf(nil, "u%d", i), PublishOptions{})
		require.NoError(t, err, "the primary acknowledges without its replica")
		unreplicated = append(unreplicated, id)
	}
	recPlain.waitN(t, 6) // delivered live
	safeErr := make(chan error, 1)
	go func() {
		_, err := safe.Publish(ctx, "safe", []byte("u"), PublishOptions{})
		safeErr <- err
	}()
	primary.Kill(t)
	replica.Resume(t)
	killed := time.Now()
	for g.Primary(t) == primary {
		require.Less(t, time.Since(killed), 30*time.Second, "no failover")
		time.Sleep(20 * time.Millisecond)
	}
	err := <-safeErr
	require.Error(t, err, "MinReplicas: a message no replica confirmed is not acknowledged")
	t.Logf("MinReplicas publish during the outage: %v", err)

	after, err := plain.Publish(ctx, "plain", []byte("after"), PublishOptions{})
	require.NoError(t, err)
	recPlain.wait(t, "the message published after the failover", func(msgs []*Message) bool {
		return len(msgs) > 0 && msgs[len(msgs)-1].ID == after
	})
	require.Positive(t, recPlain.gapCount(), "the member's last message is gone from the new primary: a gap, not silence")
	hist, err := plain.History(ctx, "plain", HistoryOptions{})
	require.NoError(t, err)
	for _, m := range hist.Messages {
		require.NotContains(t, unreplicated, m.ID, "the promoted replica never had it")
	}
	// The safe topic lost nothing acknowledged.
	hist, err = safe.History(ctx, "safe", HistoryOptions{})
	require.NoError(t, err)
	for _, m := range recSafe.messages()[:3] {
		require.Contains(t, messageIDs(hist.Messages), m.ID)
	}
}

func messageIDs(msgs []*Message) []ID {
	ids := make([]ID, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// MinReplicas on a Cluster with replicas: every publish is confirmed by a
// replica, and the cost, measured against plain publishes in the same run
// (interleaved rounds), is logged.
func TestRedisBackplaneClusterMinReplicas(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1})
	ctx := context.Background()
	plain := openRedis(t, RedisOptions{Client: cl.Client(t)})
	safe := openRedis(t, RedisOptions{Client: cl.Client(t), MinReplicas: 1})
	var took [2]time.Duration
	const rounds, per = 5, 60
	for r := range rounds {
		for i, b := range []*RedisBackplane{plain, safe} {
			start := time.Now()
			for j := range per {
				_, err := b.Publish(ctx, fmt.Sprintf("room-%d", j%6), fmt.Appendf(nil, "%d-%d", r, j), PublishOptions{})
				require.NoError(t, err)
			}
			took[i] += time.Since(start)
		}
	}
	n := time.Duration(rounds * per)
	t.Logf("sequential publishes, 6 topics on 3 primaries: %v each without MinReplicas, %v with MinReplicas 1 (%.2fx)",
		(took[0] / n).Round(time.Microsecond), (took[1] / n).Round(time.Microsecond), float64(took[1])/float64(took[0]))
	// A replica is down: the publishes to its primary's slots fail, as
	// they must, and name the reason.
	victim := cl.Primary(t, "rtkit:{room-0}")
	for _, s := range cl.Nodes() {
		if s != victim && replicaOf(t, s, victim) {
			s.Pause(t)
			t.Cleanup(func() { s.Resume(t) })
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err := safe.Publish(pctx, "room-0", []byte("x"), PublishOptions{})
	require.True(t, errors.Is(err, ErrNotReplicated), "got %v", err)
}

// replicaOf reports whether s replicates primary.
func replicaOf(t *testing.T, s, primary *redistest.Server) bool {
	t.Helper()
	info, err := s.Client(t).Info(context.Background(), "replication").Result()
	require.NoError(t, err)
	_, port, _ := splitHostPort(primary.Addr())
	return containsLine(info, "role:slave") && containsLine(info, "master_port:"+port)
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

func containsLine(text, line string) bool {
	for l := range strings.Lines(text) {
		if strings.TrimRight(l, "\r\n") == line {
			return true
		}
	}
	return false
}
