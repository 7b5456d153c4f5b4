package tasks

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedisReconciler breaks the store's indexes the way a crash between
// two writes could (a Redis failover losing part of a transition) and
// checks that maintenance repairs them.
func TestRedisReconciler(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client(t)
	ctx := context.Background()
	prefix := db.Prefix + "rec:"
	s, err := NewRedisStore(RedisOptions{Client: rdb, Prefix: prefix, ReconcileEvery: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	r := newRunner(t, s, Options{}, true)
	ran := make(chan string, 4)
	Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error { ran <- j.ID; return nil })

	orphan, err := r.Enqueue(ctx, "job", nil) // pending, but missing from the pending list
	require.NoError(t, err)
	base := prefix + "{default}:"
	require.NoError(t, rdb.LRem(ctx, base+"pending", 0, orphan.ID).Err())
	stray, err := r.Enqueue(ctx, "job", nil) // claimed, but missing from the active set and its worker's lease gone
	require.NoError(t, err)
	leases, err := s.Claim(ctx, "ghost", []string{DefaultQueue}, 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	require.Equal(t, stray.ID, leases[0].Task.ID)
	require.NoError(t, rdb.SRem(ctx, base+"active", stray.ID).Err())
	require.NoError(t, rdb.ZRem(ctx, base+"leases", "ghost").Err())
	require.NoError(t, rdb.HSet(ctx, base+"f:st", "junk", "garbage").Err()) // an unreadable task

	startRun(t, r)
	got := map[string]bool{}
	for range 2 {
		select {
		case id := <-ran:
			got[id] = true
		case <-time.After(15 * time.Second):
			t.Fatalf("the reconciler repaired %v of 2 tasks", got)
		}
	}
	assert.True(t, got[orphan.ID] && got[stray.ID])
	eventually(t, 5*time.Second, func() bool { return rdb.HExists(ctx, base+"f:st", "junk").Val() == false }, "junk task dropped")
}

// TestRedisStoreOptions checks NewRedisStore's validation.
func TestRedisStoreOptions(t *testing.T) {
	t.Parallel()
	_, err := NewRedisStore(RedisOptions{})
	assert.Error(t, err)
	ring := redis.NewRing(&redis.RingOptions{})
	defer ring.Close()
	_, err = NewRedisStore(RedisOptions{Client: ring})
	assert.Error(t, err)
	c := redis.NewClient(&redis.Options{})
	defer c.Close()
	_, err = NewRedisStore(RedisOptions{Client: c, Prefix: "a{b}"})
	assert.Error(t, err)
}

// TestRedisStoreRedisDown stops Redis under a running runner: Enqueue
// fails with an error, and the runner resumes when Redis is back.
func TestRedisStoreRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := srv.Client(t)
	s := newRedisStore(t, rdb, "down:", storeConfig{})
	r := newRunner(t, s, Options{})
	ran := make(chan int, 10)
	Handle(r, "job", func(ctx context.Context, j *Job[int]) error { ran <- j.Payload; return nil })
	ctx := context.Background()
	_, err := r.Enqueue(ctx, "job", 1)
	require.NoError(t, err)
	assert.Equal(t, 1, <-ran)
	srv.Stop(t)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = r.Enqueue(cctx, "job", 2)
	cancel()
	require.Error(t, err, "enqueue reports the outage")
	srv.Start(t)
	eventually(t, 20*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := r.Enqueue(cctx, "job", 3)
		return err == nil
	}, "enqueue works again after Redis is back")
	select {
	case v := <-ran:
		assert.Equal(t, 3, v)
	case <-time.After(20 * time.Second):
		t.Fatal("the runner didn't resume after Redis came back")
	}
}
