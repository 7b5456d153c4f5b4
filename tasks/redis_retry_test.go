package tasks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// The Redis store's scripts applied twice with the same arguments, as
// go-redis does when it retries a call after a read timeout that Redis
// had in fact run: each must have the effect of one application, and the
// second must reply as the first did.

// scriptStore returns a Redis store on a fresh prefix and its client.
func scriptStore(t *testing.T) (*RedisStore, *redis.Client) {
	t.Helper()
	db := redistest.New(t)
	client := db.Client(t)
	return newRedisStore(t, client, db.Prefix, storeConfig{}), client
}

// twice runs script twice with the same arguments and returns both
// replies.
func twice(t *testing.T, s *RedisStore, script *redis.Script, queue string, args ...any) (any, any) {
	t.Helper()
	ctx := context.Background()
	r1, err := s.run(ctx, script, queue, args...).Result()
	require.NoError(t, err)
	r2, err := s.run(ctx, script, queue, args...).Result()
	require.NoError(t, err)
	return r1, r2
}

// line returns a task's state line.
func line(t *testing.T, s *RedisStore, c *redis.Client, id string) string {
	t.Helper()
	l, err := c.HGet(context.Background(), s.base(DefaultQueue)+"f:st", id).Result()
	if err == redis.Nil {
		return ""
	}
	require.NoError(t, err)
	return l
}

// index returns the IDs in the index of state st.
func index(t *testing.T, s *RedisStore, c *redis.Client, st State) []string {
	t.Helper()
	ctx, k := context.Background(), s.base(DefaultQueue)+string(st)
	var ids []string
	var err error
	switch st {
	case Active:
		ids, err = c.SMembers(ctx, k).Result()
	case Scheduled, Retry:
		ids, err = c.ZRange(ctx, k, 0, -1).Result()
	default:
		ids, err = c.LRange(ctx, k, 0, -1).Result()
	}
	require.NoError(t, err)
	return ids
}

func testTask(id string) *Task {
	return &Task{ID: id, Type: "t", Queue: DefaultQueue, Payload: []byte("{}"), MaxAttempts: 3, Timeout: time.Minute}
}

func TestRedisScriptsTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("enqueue", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		delayed, unique := testTask("delayed"), testTask("unique")
		delayed.RunAt = time.Now().Add(time.Hour)
		unique.UniqueKey, unique.UniqueTTL = "u", time.Hour
		args := []any{s.nonce(), 2, "a", packDef(testTask("a")), "b", packDef(testTask("b"))}
		args = taskArgs(args, delayed)
		args = taskArgs(args, unique)
		r1, err := s.run(ctx, enqueueScript, DefaultQueue, args...).Result()
		require.NoError(t, err)
		assert.Empty(t, r1)
		// The task runs between the two applications (the retry comes
		// after a read timeout): the second must not make it pending again.
		leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, leases, 1)
		r2, err := s.run(ctx, enqueueScript, DefaultQueue, args...).Result()
		require.NoError(t, err)
		assert.Empty(t, r2)
		assert.Equal(t, fence(leases[0]), line(t, s, c, "a"), "the claimed task is left alone")
		assert.Equal(t, []string{"b", "unique"}, index(t, s, c, Pending))
		assert.Equal(t, []string{"delayed"}, index(t, s, c, Scheduled))

		// A call that refused tasks replies the same twice.
		args = []any{s.nonce(), 2, "a", packDef(testTask("a")), "c", packDef(testTask("c"))}
		other := testTask("other")
		other.UniqueKey, other.UniqueTTL = "u", time.Hour
		args = taskArgs(args, other)
		r1, r2 = twice(t, s, enqueueScript, DefaultQueue, args...)
		assert.Equal(t, []any{int64(1), "a", int64(3), "unique"}, r1)
		assert.Equal(t, []any{"1", "a", "3", "unique"}, r2)
		assert.Equal(t, []string{"b", "unique", "c"}, index(t, s, c, Pending))
		assert.Equal(t, "pending|0", line(t, s, c, "c"))
	})

	t.Run("periodic", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		args := taskArgs([]any{"tick", 1000}, testTask("p1"))
		r1, r2 := twice(t, s, periodicScript, DefaultQueue, args...)
		assert.Equal(t, int64(1), r1)
		assert.Equal(t, int64(1), r2, "the retry of the call that enqueued the tick")
		assert.Equal(t, []string{"p1"}, index(t, s, c, Pending))
		// Another node's task for the same tick is refused.
		n, err := s.run(ctx, periodicScript, DefaultQueue, taskArgs([]any{"tick", 1000}, testTask("p2"))...).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
	})

	t.Run("claim", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		for _, id := range []string{"a", "b", "c"} {
			require.NoError(t, s.Enqueue(ctx, testTask(id)))
		}
		r1, r2 := twice(t, s, claimScript, DefaultQueue, "w", 2, 60000, s.nonce())
		l1, l2 := r1.([]any), r2.([]any)
		require.Len(t, l1, 7)
		assert.Equal(t, l1[:1], l2[:1], "the claim's start time")
		assert.Equal(t, l1[2], l2[2], "the same token")
		pairs := func(l []any) (out [][2]any) {
			for i := 3; i+1 < len(l); i += 2 {
				out = append(out, [2]any{l[i], l[i+1]})
			}
			return out
		}
		assert.ElementsMatch(t, pairs(l1), pairs(l2), "the same tasks, in any order")
		assert.ElementsMatch(t, []string{"a", "b"}, index(t, s, c, Active))
		assert.Equal(t, []string{"c"}, index(t, s, c, Pending))
		seq, err := c.Get(ctx, s.base(DefaultQueue)+"seq").Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(1), seq, "one claim, one token")
	})

	t.Run("finish", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		for _, id := range []string{"ok", "retry", "back", "dead"} {
			require.NoError(t, s.Enqueue(ctx, testTask(id)))
		}
		leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, 4, time.Minute)
		require.NoError(t, err)
		require.Len(t, leases, 4)
		args := []any{s.retMS(), s.keep}
		for _, l := range leases {
			to := map[string]State{"ok": Succeeded, "retry": Retry, "back": Pending, "dead": Dead}[l.Task.ID]
			args = append(args, l.Task.ID, fence(l), string(to), 60000, "")
		}
		r1, r2 := twice(t, s, finishScript, DefaultQueue, args...)
		assert.Empty(t, r1)
		assert.Empty(t, r2, "a retried finish is not a lost lease")
		assert.Equal(t, []string{"ok"}, index(t, s, c, Succeeded))
		assert.Equal(t, []string{"dead"}, index(t, s, c, Dead))
		assert.Equal(t, []string{"retry"}, index(t, s, c, Retry))
		assert.Equal(t, []string{"back"}, index(t, s, c, Pending))
		assert.Empty(t, index(t, s, c, Active))
		back, err := s.Get(ctx, "back")
		require.NoError(t, err)
		assert.Equal(t, 0, back.Attempt, "handed back once, its attempt uncounted once")
		// A late finish after another claim is still fenced off.
		again, err := s.Claim(ctx, "w2", []string{DefaultQueue}, 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, again, 1)
		for _, l := range leases {
			if l.Task.ID == "back" {
				assert.ErrorIs(t, s.Finish(ctx, l, Outcome{State: Pending}), ErrLeaseLost)
			}
		}
	})

	t.Run("renew progress maintain reconcile", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		require.NoError(t, s.Enqueue(ctx, testTask("a")))
		require.NoError(t, s.Enqueue(ctx, testTask("b")))
		leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, 2, time.Minute)
		require.NoError(t, err)
		require.Len(t, leases, 2)
		r1, r2 := twice(t, s, renewScript, DefaultQueue, "w", 60000, "a", fence(leases[0]), "b", fence(leases[1]))
		assert.Equal(t, r1, r2)
		r1, r2 = twice(t, s, progressScript, DefaultQueue, "a", fence(leases[0]), "50")
		assert.Equal(t, int64(1), r1)
		assert.Equal(t, int64(1), r2)
		// The worker's lease expires: maintenance hands its tasks back once.
		require.NoError(t, c.ZAdd(ctx, s.base(DefaultQueue)+"leases", redis.Z{Score: 1, Member: "w"}).Err())
		r1, r2 = twice(t, s, maintainScript, DefaultQueue, s.retMS(), s.keep, errLeaseExpired)
		assert.Len(t, parseViews(r1, DefaultQueue), 2)
		assert.Empty(t, r2)
		assert.ElementsMatch(t, []string{"a", "b"}, index(t, s, c, Pending))
		r1, r2 = twice(t, s, reconcileScript, DefaultQueue, "a", "b")
		assert.Equal(t, int64(0), r1)
		assert.Equal(t, int64(0), r2)
		assert.ElementsMatch(t, []string{"a", "b"}, index(t, s, c, Pending))
	})

	t.Run("retry cancel delete", func(t *testing.T) {
		t.Parallel()
		s, c := scriptStore(t)
		for _, id := range []string{"r", "x", "d"} {
			task := testTask(id)
			task.RunAt = time.Now().Add(time.Hour)
			require.NoError(t, s.Enqueue(ctx, task))
		}
		for _, op := range []string{"retry", "cancel", "delete"} {
			id := op[:1]
			if op == "cancel" {
				id = "x"
			}
			r1, r2 := twice(t, s, changeScript, DefaultQueue, op, id, s.retMS(), s.keep, s.nonce())
			t1, t2 := parseViews(r1, DefaultQueue), parseViews(r2, DefaultQueue)
			assert.Equal(t, t1, t2, op)
		}
		assert.Equal(t, []string{"r"}, index(t, s, c, Pending))
		assert.Equal(t, []string{"x"}, index(t, s, c, Cancelled))
		assert.Empty(t, index(t, s, c, Scheduled))
		assert.Equal(t, "", line(t, s, c, "d"))
		// Without the retry's nonce, the same change is refused.
		_, err := s.Retry(ctx, "r")
		assert.ErrorIs(t, err, ErrBadState)
	})
}

// TestRedisScriptsTwiceKeys checks that the applied marks expire.
func TestRedisScriptsTwiceKeys(t *testing.T) {
	t.Parallel()
	s, c := scriptStore(t)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, testTask("a")))
	keys, err := c.Keys(ctx, s.base(DefaultQueue)+"n:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0))
	assert.LessOrEqual(t, ttl, 30*time.Second, fmt.Sprint(ttl))
}

// TestRedisRenewHandsBackTasksItsWorkerLostTrackOf: a claim whose reply
// never reached its worker leaves a task active under the worker's
// lease, which the worker keeps renewing for its other tasks. Renew
// gives such a task up once it was claimed a lease ago, and maintenance
// hands it back.
func TestRedisRenewHandsBackTasksItsWorkerLostTrackOf(t *testing.T) {
	t.Parallel()
	s, c := scriptStore(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	require.NoError(t, s.Enqueue(ctx, testTask("lost")))
	require.NoError(t, s.Enqueue(ctx, testTask("held")))
	// The lost reply: the script ran, its worker never heard of it.
	require.NoError(t, s.run(ctx, claimScript, DefaultQueue, "w", 1, ttl.Milliseconds(), s.nonce()).Err())
	leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, 1, ttl)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	require.Equal(t, "held", leases[0].Task.ID)

	lost, _, err := s.Renew(ctx, leases, ttl)
	require.NoError(t, err)
	assert.Empty(t, lost)
	back, err := s.Maintain(ctx)
	require.NoError(t, err)
	assert.Empty(t, back, "claimed less than a lease ago: may still be on its way to the worker")

	time.Sleep(ttl + 50*time.Millisecond)
	lost, _, err = s.Renew(ctx, leases, ttl)
	require.NoError(t, err)
	assert.Empty(t, lost)
	back, err = s.Maintain(ctx)
	require.NoError(t, err)
	require.Len(t, back, 1)
	assert.Equal(t, "lost", back[0].ID)
	assert.Equal(t, Pending, back[0].State)
	assert.Equal(t, errLeaseExpired, back[0].LastError)
	assert.Equal(t, []string{"held"}, index(t, s, c, Active))
	assert.Equal(t, []string{"lost"}, index(t, s, c, Pending))
}
