// Package redisslots keeps a Redis Cluster client's slot map fresh through
// a failover, for every rtkit package that talks to Redis.
//
// go-redis refreshes a ClusterClient's slot map by itself only on MOVED, or
// once the map is a minute old. A primary that died answers with neither,
// so without help every command for its slots fails for up to a minute
// after a replica has taken over. [Follow] adds a hook that refreshes the
// map after a command fails on a connection error or CLUSTERDOWN, at most
// every [MinReload].
package redisslots

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// MinReload is the shortest time between two slot map refreshes asked for
// by one [Refresher].
const MinReload = 250 * time.Millisecond

// Refresher refreshes a Cluster client's slot map after failures. Its
// methods are safe for concurrent use.
type Refresher struct {
	c    *redis.ClusterClient
	last atomic.Int64 // unix ns of the last refresh asked for
}

// Follow adds a [Refresher] hook to c when c is a *redis.ClusterClient and
// returns it; for any other client it returns nil, which is ready to use
// and does nothing. Each call adds a hook of its own: harmless, as each is
// rate-limited, but call it once per client and component.
func Follow(c redis.UniversalClient) *Refresher {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	r := &Refresher{c: cc}
	cc.AddHook(r)
	return r
}

// Refresh asks the client to reload its slot map, unless it was asked less
// than MinReload ago. A nil Refresher does nothing.
func (r *Refresher) Refresh() {
	if r == nil {
		return
	}
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(MinReload) || !r.last.CompareAndSwap(last, now) {
		return
	}
	r.c.ReloadState(context.Background())
}

// Failed refreshes the slot map if err says it may be stale: any error but
// an answer from the node that was asked (other than CLUSTERDOWN), a nil
// reply, a cancelled context or a closed client.
func (r *Refresher) Failed(err error) {
	if r == nil || !Stale(err) {
		return
	}
	r.Refresh()
}

// Stale reports whether err suggests the slot map may be out of date.
func Stale(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") {
		return false // an answer from the right node
	}
	return true
}

// DialHook implements redis.Hook.
func (r *Refresher) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (r *Refresher) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.Failed(err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (r *Refresher) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			for _, c := range cmds {
				if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
					r.Failed(c.Err())
					break
				}
			}
		}
		return err
	}
}
