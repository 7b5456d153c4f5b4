package rtkit

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// On a Cluster, a topic's subscription lives on the primary of the topic's
// hash slot, and follows the slot when it moves: after a failover (the
// connection to the old primary fails) or a migration (the node pushes a
// sunsubscribe, or answers MOVED), the backplane refreshes the client's
// slot map, subscribes the topic on the slot's new primary, and reads the
// stream there after the last message it delivered.

// topics returns the topics subscribed through the shard.
func (sh *redisShard) topics() []*redisTopic {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := make([]*redisTopic, 0, len(sh.channels))
	for _, t := range sh.channels {
		ts = append(ts, t)
	}
	return ts
}

// rehome moves each of the shard's topics whose slot is now served by
// another primary to that primary's shard, where it is subscribed and read
// from the stream after its last delivered message. With dropped, the
// node dropped the topics' subscriptions (it no longer serves their slot,
// or the watchdog asked it to let go): a slot map that still names this
// node is stale, so rehome reloads it and looks again (see primary), and
// the topics that stay are subscribed again on this shard; otherwise the
// connection failed and the caller reconnects them. A shard left without
// topics is retired: rehome closes it and reports true.
func (sh *redisShard) rehome(topics []*redisTopic, dropped bool) (retired bool) {
	b := sh.b
	type move struct {
		t    *redisTopic
		node *redis.Client
		addr string
	}
	var moves []move
	var stay []*redisTopic
	avoid := ""
	if dropped {
		avoid = sh.addr
	}
	for _, t := range topics {
		c, err := b.primary(sh.ctx, t.key, avoid)
		if err != nil || c.Options().Addr == sh.addr {
			stay = append(stay, t)
			continue
		}
		moves = append(moves, move{t: t, node: c, addr: c.Options().Addr})
	}
	if len(moves) == 0 && !dropped && len(topics) > 0 {
		return false
	}
	// Not under b.mu: a handler runs under t.mu and may take b.mu.
	for _, m := range moves {
		m.t.suspend(true)
	}
	if dropped {
		for _, t := range stay {
			t.suspend(true)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return true
	}
	for _, m := range moves {
		if b.topics[m.t.name] != m.t || m.t.shard != sh {
			continue // released or moved meanwhile
		}
		to := b.shards[m.addr]
		if to == nil {
			to = b.newShard(m.node, m.addr)
			b.shards[m.addr] = to
		}
		sh.forget(m.t)
		m.t.shard = to
		to.subscribe(m.t)
		b.log.Info("rtkit: backplane subscription follows its slot", "topic", m.t.name, "from", sh.addr, "to", m.addr)
	}
	if dropped {
		for _, t := range stay {
			if b.topics[t.name] == t && t.shard == sh {
				sh.subscribe(t)
			}
		}
	}
	if !sh.empty() {
		return false
	}
	if b.shards[sh.addr] == sh {
		delete(b.shards, sh.addr)
	}
	sh.close()
	return true
}

// forget drops t from the shard without unsubscribing: the connection
// failed, or the server dropped the subscription already.
func (sh *redisShard) forget(t *redisTopic) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.channels[t.channel] == t {
		delete(sh.channels, t.channel)
		delete(sh.pending, t.channel)
	}
}

func (sh *redisShard) empty() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.channels) == 0
}

// staleMapWait bounds how long rehome waits for the client's slot map to
// stop naming a node that dropped a slot's subscriptions, and
// staleMapPoll how often it looks meanwhile.
const (
	staleMapWait = 2 * time.Second
	staleMapPoll = 50 * time.Millisecond
)

// primary returns the client of the primary that serves key's slot, as
// the Cluster client's slot map says. A node that drops a slot's
// subscriptions (a manual failover demoted it, a migration took the slot)
// does so at once, while the client's map names it until a reload that
// go-redis runs in the background: believed, it sends the subscription
// back to a node that no longer owns the slot, where it may stay silent.
// So when the map names avoid, primary reloads the map and looks again
// until it names another node, or staleMapWait passes (the slot may have
// come back): then it believes the map, and the watchdog (watchSlots)
// checks again later.
func (b *RedisBackplane) primary(ctx context.Context, key, avoid string) (*redis.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, staleMapWait+time.Second)
	defer cancel()
	deadline := time.Now().Add(staleMapWait)
	for {
		c, err := b.cluster.MasterForKey(ctx, key)
		if err != nil || avoid == "" || c.Options().Addr != avoid || time.Now().After(deadline) {
			return c, err
		}
		b.cluster.ReloadState(ctx) // coalesced by go-redis
		if !sleepCtx(ctx, staleMapPoll) {
			return nil, ctx.Err()
		}
	}
}

// slotCheckInterval is how often a Cluster backplane that holds
// subscriptions reloads its slot map and checks each subscription
// against it.
const slotCheckInterval = time.Second

// watchSlots is the watchdog of a Cluster backplane's subscriptions: every
// slotCheckInterval it checks that each subscribed topic listens on the
// primary the slot map names, and reloads the map for the next check. A
// subscription left elsewhere (on a demoted primary, where sharded
// messages may stop reaching it) is moved there like one the server
// dropped, and its topic read from the stream, so a missed event ends in
// a resubscription within a few seconds instead of a silent stall. It
// runs from the first subscription until Close.
func (b *RedisBackplane) watchSlots() {
	defer b.wg.Done()
	tick := time.NewTicker(slotCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-tick.C:
		}
		b.mu.Lock()
		shards := make([]*redisShard, 0, len(b.shards))
		for _, sh := range b.shards {
			shards = append(shards, sh)
		}
		b.mu.Unlock()
		if len(shards) == 0 {
			continue
		}
		for _, sh := range shards {
			sh.checkSlots()
		}
		// go-redis reloads in the background: the next check sees it.
		b.cluster.ReloadState(b.ctx)
	}
}

// checkSlots asks the node to drop the subscription of each topic whose
// slot the map places on another primary. The node's answer comes back
// through readLoop, which then moves the topic (unsubscribed, rehome): the
// shard's topics only ever move on its reader goroutine.
func (sh *redisShard) checkSlots() {
	ctx, cancel := context.WithTimeout(sh.ctx, time.Second)
	defer cancel()
	var away []*redisTopic
	for _, t := range sh.topics() {
		c, err := sh.b.cluster.MasterForKey(ctx, t.key)
		if err == nil && c.Options().Addr != sh.addr {
			away = append(away, t)
		}
	}
	if len(away) == 0 {
		return
	}
	sh.mu.Lock()
	n := 0
	for _, t := range away {
		if sh.channels[t.channel] == t && sh.pending[t.channel] == 0 {
			sh.cmds = append(sh.cmds, shardCmd{channel: t.channel})
			n++
		}
	}
	sh.mu.Unlock()
	if n > 0 {
		sh.b.log.Warn("rtkit: backplane subscriptions are not on their slot's primary; moving them", "topics", n, "node", sh.addr)
		sh.signal()
	}
}
