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
// from the stream after its last delivered message. With resubscribe, the
// topics that stay are subscribed again on this shard (the server dropped
// them); otherwise the caller reconnects them. A shard left without topics
// is retired: rehome closes it and reports true.
func (sh *redisShard) rehome(topics []*redisTopic, resubscribe bool) (retired bool) {
	b := sh.b
	type move struct {
		t    *redisTopic
		node *redis.Client
		addr string
	}
	var moves []move
	var stay []*redisTopic
	ctx, cancel := context.WithTimeout(sh.ctx, 2*time.Second)
	for _, t := range topics {
		c, err := b.cluster.MasterForKey(ctx, t.key)
		if err != nil || c.Options().Addr == sh.addr {
			stay = append(stay, t)
			continue
		}
		moves = append(moves, move{t: t, node: c, addr: c.Options().Addr})
	}
	cancel()
	if len(moves) == 0 && !resubscribe && len(topics) > 0 {
		return false
	}
	// Not under b.mu: a handler runs under t.mu and may take b.mu.
	for _, m := range moves {
		m.t.suspend(true)
	}
	if resubscribe {
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
	if resubscribe {
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
