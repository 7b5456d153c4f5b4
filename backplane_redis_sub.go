package rtkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTopic is a topic with local subscribers on this node.
type redisTopic struct {
	name, key string
	channel   string        // pub/sub channel: the key plus the database
	size      int           // history size, to judge recovery from an empty start
	ttl       time.Duration // history TTL, likewise
	shard     *redisShard
	subs      subSet // changed under RedisBackplane.mu

	// Guarded by shard.mu.
	needSync bool // subscribed (again) and not yet read from the stream

	mu        sync.Mutex  // orders deliveries; guards below
	live      bool        // synced: deliver live messages; else hold them in buf
	gen       uint64      // connection generation; a sync of an older one is void
	hasLast   bool        // last is known from the stream
	last      ID          // newest message delivered (or known at first sync)
	downSince time.Time   // when the connection was lost, zero if it was not
	buf       []heldBatch // live batches held while syncing
	held      int         // messages in buf
	bufFull   bool        // buf overflowed: read the stream again
	ready     chan struct{}
	isReady   bool
}

// heldBatch is a live payload held while its topic syncs.
type heldBatch struct {
	prev ID // the stream's newest entry before the batch
	msgs []*Message
}

// redisShard is one subscription connection: all topics on a standalone
// Redis, or the topics of one Cluster node.
type redisShard struct {
	b      *RedisBackplane
	node   redis.UniversalClient
	addr   string             // the Cluster node's address; "" for a standalone Redis
	ctx    context.Context    // ends the shard's goroutines
	cancel context.CancelFunc // cancels ctx

	mu       sync.Mutex
	ps       *redis.PubSub
	channels map[string]*redisTopic // subscribed channel → topic
	pending  map[string]int         // channel → SUBSCRIBE commands not yet confirmed
	cmds     []shardCmd             // commands for the manager to send, in order
	syncs    []*redisTopic          // topics for the manager to read from the stream
	wake     chan struct{}
}

type shardCmd struct {
	subscribe bool
	channel   string
}

// Subscribe implements [Backplane.Subscribe]. It waits until the node's
// Redis subscription for the topic is confirmed (or ctx ends), so that
// live delivery starts without a gap, and delivers history to h before it
// returns.
func (b *RedisBackplane) Subscribe(ctx context.Context, topic string, opts SubscribeOptions, h Handler) (*Subscription, error) {
	if err := CheckTopic(topic); err != nil {
		return nil, err
	}
	s := newSubscriber(h, true)
	t, err := b.acquire(ctx, topic, s)
	if err != nil {
		return nil, err
	}
	release := func() { b.release(t, s) }
	select {
	case <-t.ready:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	case <-b.ctx.Done():
		release()
		return nil, ErrClosed
	}
	var hist History
	hist.Complete = true
	switch {
	case !opts.Since.IsZero():
		hist, err = b.readHistory(ctx, topic, opts.Since, 0)
	case opts.FromStart:
		hist, err = b.readFromStart(ctx, topic)
	}
	if err != nil {
		release()
		return nil, err
	}
	// SubscribeOptions.MaxReplay (issue 12): keep the newest messages only.
	var all bool
	hist.Messages, all = capReplay(hist.Messages, opts.MaxReplay)
	hist.Complete = hist.Complete && all
	t.mu.Lock()
	pos := s.finish(opts.Since, hist.Messages, t.last)
	t.mu.Unlock()
	return newSubscription(topic, hist.Complete, pos, release), nil
}

// acquire adds s to the topic, subscribing the node to it if s is the
// first local subscriber.
func (b *RedisBackplane) acquire(ctx context.Context, topic string, s *subscriber) (*redisTopic, error) {
	key := b.key(topic)
	var node redis.UniversalClient = b.client
	addr := ""
	if b.cluster != nil {
		c, err := b.cluster.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("rtkit: subscribe to %q: %w", topic, err)
		}
		node, addr = c, c.Options().Addr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	t := b.topics[topic]
	if t == nil {
		sh := b.shards[addr]
		if sh == nil {
			sh = b.newShard(node, addr)
			b.shards[addr] = sh
		}
		lim := b.cfg.limits(topic)
		t = &redisTopic{name: topic, key: key, channel: b.channel(topic), size: lim.size, ttl: lim.ttl, shard: sh, ready: make(chan struct{})}
		b.topics[topic] = t
		sh.subscribe(t)
	}
	t.subs.add(s)
	return t, nil
}

// release removes s from the topic, unsubscribing the node from it if s
// was the last local subscriber.
func (b *RedisBackplane) release(t *redisTopic, s *subscriber) {
	s.closed.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.subs.remove(s) == 0 && b.topics[t.name] == t {
		delete(b.topics, t.name)
		t.shard.unsubscribe(t)
	}
}

func (b *RedisBackplane) newShard(node redis.UniversalClient, addr string) *redisShard {
	sh := &redisShard{
		b:        b,
		node:     node,
		addr:     addr,
		channels: make(map[string]*redisTopic),
		pending:  make(map[string]int),
		wake:     make(chan struct{}, 1),
	}
	sh.ctx, sh.cancel = context.WithCancel(b.ctx)
	sh.ps = sh.newPubSub()
	if b.cluster != nil && !b.watching {
		b.watching = true
		b.wg.Add(1)
		go b.watchSlots()
	}
	b.wg.Add(2)
	go sh.readLoop()
	go sh.manageLoop()
	return sh
}

func (sh *redisShard) newPubSub() *redis.PubSub {
	if sh.b.cluster != nil {
		return sh.node.SSubscribe(sh.ctx)
	}
	return sh.node.Subscribe(sh.ctx)
}

func (sh *redisShard) signal() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// subscribe queues a SUBSCRIBE for t; the caller holds b.mu.
func (sh *redisShard) subscribe(t *redisTopic) {
	sh.mu.Lock()
	sh.channels[t.channel] = t
	sh.pending[t.channel]++
	t.needSync = true
	sh.cmds = append(sh.cmds, shardCmd{subscribe: true, channel: t.channel})
	sh.mu.Unlock()
	sh.signal()
}

// unsubscribe queues an UNSUBSCRIBE for t; the caller holds b.mu.
func (sh *redisShard) unsubscribe(t *redisTopic) {
	sh.mu.Lock()
	if sh.channels[t.channel] == t {
		delete(sh.channels, t.channel)
	}
	sh.cmds = append(sh.cmds, shardCmd{channel: t.channel})
	sh.mu.Unlock()
	sh.signal()
}

func (sh *redisShard) close() {
	sh.cancel()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_ = sh.ps.Close()
}

// readLoop receives from the subscription connection and delivers; on a
// connection failure it replaces the connection and queues every topic to
// be subscribed and read from the stream again.
func (sh *redisShard) readLoop() {
	defer sh.b.wg.Done()
	ctx := sh.ctx
	fails, pinged := 0, false
	for {
		sh.mu.Lock()
		ps := sh.ps
		sh.mu.Unlock()
		msg, err := ps.ReceiveTimeout(ctx, sh.b.health)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				_ = ps.Ping(ctx)
				continue
			}
			sh.b.log.Warn("rtkit: backplane subscription connection failed; reconnecting", "err", err, "attempt", fails+1, "node", sh.addr)
			if sh.b.cluster != nil {
				// The node may have failed over, or lost the slot: find
				// each topic's primary again after the next refresh.
				sh.b.refreshSlots()
				if !sleepCtx(ctx, min(backoff(fails), maxRehomeDelay)) {
					return
				}
				fails++
				if sh.rehome(sh.topics(), false) {
					return // every topic moved away; the shard is retired
				}
				sh.reconnect()
				continue
			}
			sh.reconnect()
			if !sleepCtx(ctx, backoff(fails)) {
				return
			}
			fails++
			pinged = false
			continue
		}
		if fails > 0 {
			sh.b.log.Info("rtkit: backplane subscription connection restored", "attempts", fails)
		}
		fails, pinged = 0, false
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				sh.confirmed(m.Channel)
			case "sunsubscribe":
				sh.unsubscribed(m.Channel)
			}
		case *redis.Message:
			sh.deliver(m.Channel, m.Payload)
		}
	}
}

// maxRehomeDelay bounds the pause between two attempts to find a failed
// Cluster node's topics a new primary: each attempt costs a refused dial
// and a rate-limited slot map refresh, and subscribers wait for it.
const maxRehomeDelay = 500 * time.Millisecond

// reconnect replaces the connection and queues all topics for
// resubscription and a stream read.
func (sh *redisShard) reconnect() {
	sh.mu.Lock()
	old := sh.ps
	sh.ps = sh.newPubSub()
	clear(sh.pending)
	sh.cmds = sh.cmds[:0]
	sh.syncs = sh.syncs[:0]
	topics := make([]*redisTopic, 0, len(sh.channels))
	for ch, t := range sh.channels {
		t.needSync = true
		sh.pending[ch] = 1
		sh.cmds = append(sh.cmds, shardCmd{subscribe: true, channel: ch})
		topics = append(topics, t)
	}
	sh.mu.Unlock()
	// Never take t.mu under sh.mu: a handler runs under t.mu and may
	// close its subscription, which takes sh.mu. The confirmations that
	// start the reads come through this goroutine, after this.
	for _, t := range topics {
		t.suspend(true)
	}
	_ = old.Close()
	sh.signal()
}

// suspend holds live messages until the topic is read from the stream
// again, and voids reads already under way. lost says the connection was
// lost, so messages may have been missed.
func (t *redisTopic) suspend(lost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live = false
	t.gen++
	if lost && t.downSince.IsZero() {
		t.downSince = time.Now()
	}
}

// resync suspends t and queues a stream read for it: its live messages
// can't be trusted to be the next ones the stream holds.
func (sh *redisShard) resync(t *redisTopic) {
	t.suspend(false)
	sh.mu.Lock()
	if sh.channels[t.channel] == t {
		t.needSync = false
		sh.syncs = append(sh.syncs, t)
	}
	sh.mu.Unlock()
	sh.signal()
}

// confirmed handles a subscription confirmation: once the last SUBSCRIBE
// sent for the channel is confirmed, the topic is read from the stream.
// A confirmation nobody asked for means the client library reconnected
// and resubscribed by itself, so messages may have been missed: the topic
// is read from the stream as after a reconnect.
func (sh *redisShard) confirmed(channel string) {
	sh.mu.Lock()
	n, expected := sh.pending[channel]
	if n > 1 {
		sh.pending[channel] = n - 1
		sh.mu.Unlock()
		return
	}
	delete(sh.pending, channel)
	t := sh.channels[channel]
	switch {
	case t == nil:
		sh.mu.Unlock()
	case t.needSync:
		t.needSync = false
		sh.syncs = append(sh.syncs, t)
		sh.mu.Unlock()
		sh.signal()
	case !expected:
		sh.mu.Unlock()
		t.suspend(true)
		sh.resync(t)
	default:
		sh.mu.Unlock()
	}
}

// unsubscribed handles an unsubscription. One the node did not ask for
// means a Cluster slot moved away (resharding, or the node became a
// replica), or the watchdog found the topic's slot on another primary
// (checkSlots): the topic follows its slot to its primary and resumes
// from the stream there.
func (sh *redisShard) unsubscribed(channel string) {
	sh.mu.Lock()
	t := sh.channels[channel]
	wanted := t != nil && sh.pending[channel] == 0
	sh.mu.Unlock()
	if !wanted {
		return
	}
	sh.b.log.Info("rtkit: Redis dropped a backplane subscription (slot moved); following it", "topic", t.name, "node", sh.addr)
	sh.rehome([]*redisTopic{t}, true)
}

// deliver dispatches a pub/sub payload to the topic's subscribers.
func (sh *redisShard) deliver(channel, payload string) {
	sh.mu.Lock()
	t := sh.channels[channel]
	sh.mu.Unlock()
	if t == nil {
		return
	}
	prev, msgs, err := decodePayload(t.name, payload)
	if err != nil {
		// Its messages are in the stream: read them from there.
		sh.b.log.Error("rtkit: malformed backplane payload; reading the topic's stream instead", "topic", t.name, "err", err)
		sh.resync(t)
		return
	}
	if !t.offer(prev, msgs) {
		// Messages were missed, or the payload did not come from a
		// backplane of this namespace: what the stream holds decides.
		sh.resync(t)
	}
}

// offer delivers a live batch, or holds it while the topic syncs. It
// reports false, having delivered only the batch's ephemeral messages,
// when the batch is not the next one the stream holds: the caller reads
// the stream instead of trusting its IDs.
func (t *redisTopic) offer(prev ID, msgs []*Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.live {
		// Past the bound, hold nothing more: a hole in buf would hide
		// messages. The stream read after this one recovers them.
		if t.bufFull || t.held+len(msgs) > maxRecoveryBuffer {
			t.bufFull = true
			return true
		}
		t.buf = append(t.buf, heldBatch{prev: prev, msgs: msgs})
		t.held += len(msgs)
		return true
	}
	if !t.follows(prev, msgs) {
		for _, m := range msgs {
			if m.Ephemeral() {
				t.subs.dispatch(m)
			}
		}
		return false
	}
	for _, m := range msgs {
		t.dispatchLocked(m)
	}
	return true
}

// follows reports whether a batch's persistent messages are the next ones
// the stream holds after the last delivered: the batch says the stream's
// newest entry before it was prev. A topic without history has nothing to
// check against.
func (t *redisTopic) follows(prev ID, msgs []*Message) bool {
	return t.size == 0 || prev == t.last || !slices.ContainsFunc(msgs, isPersistent)
}

// covered reports whether every persistent message of a batch is at or
// before the last delivered: a stream read delivered them already.
func (t *redisTopic) covered(msgs []*Message) bool {
	for _, m := range msgs {
		if !m.Ephemeral() && m.ID.Compare(t.last) > 0 {
			return false
		}
	}
	return true
}

func isPersistent(m *Message) bool { return !m.Ephemeral() }

// dispatchLocked delivers m unless it was delivered already.
func (t *redisTopic) dispatchLocked(m *Message) {
	if !m.Ephemeral() {
		if m.ID.Compare(t.last) <= 0 {
			return
		}
		t.last = m.ID
	}
	t.subs.dispatch(m)
}

// manageLoop sends subscription commands and reads topics from their
// streams after (re)subscription.
func (sh *redisShard) manageLoop() {
	defer sh.b.wg.Done()
	ctx := sh.ctx
	fails := 0
	for {
		select {
		case <-sh.wake:
		case <-ctx.Done():
			return
		}
		sh.mu.Lock()
		ps, cmds, syncs := sh.ps, sh.cmds, sh.syncs
		sh.cmds, sh.syncs = nil, nil
		sh.mu.Unlock()
		// A failed command surfaces as a read error, and the reader then
		// resubscribes everything; nothing to retry here.
		sh.send(ctx, ps, cmds)
		if len(syncs) == 0 {
			continue
		}
		if err := sh.sync(ctx, syncs); err != nil {
			if ctx.Err() != nil {
				return
			}
			sh.b.log.Warn("rtkit: backplane could not read topic history; retrying", "err", err, "topics", len(syncs))
			sh.b.refreshSlots()
			if !sleepCtx(ctx, backoff(fails)) {
				return
			}
			fails++
			sh.mu.Lock()
			for _, t := range syncs {
				if sh.channels[t.channel] == t && !t.needSync {
					sh.syncs = append(sh.syncs, t)
				}
			}
			sh.mu.Unlock()
			sh.signal()
			continue
		}
		fails = 0
	}
}

// send sends queued SUBSCRIBE/UNSUBSCRIBE commands, grouping runs of the
// same kind into one command where the server allows (not for sharded
// channels, which must share a slot per command).
func (sh *redisShard) send(ctx context.Context, ps *redis.PubSub, cmds []shardCmd) {
	for len(cmds) > 0 {
		n := 1
		if sh.b.cluster == nil {
			for n < len(cmds) && cmds[n].subscribe == cmds[0].subscribe {
				n++
			}
		}
		chans := make([]string, n)
		for i := range n {
			chans[i] = cmds[i].channel
		}
		var err error
		switch {
		case sh.b.cluster != nil && cmds[0].subscribe:
			err = ps.SSubscribe(ctx, chans...)
		case sh.b.cluster != nil:
			err = ps.SUnsubscribe(ctx, chans...)
		case cmds[0].subscribe:
			err = ps.Subscribe(ctx, chans...)
		default:
			err = ps.Unsubscribe(ctx, chans...)
		}
		if err != nil && ctx.Err() == nil {
			sh.b.log.Debug("rtkit: backplane subscription command failed", "err", err)
		}
		cmds = cmds[n:]
	}
}

// sleepCtx sleeps for d or until ctx ends; it reports whether ctx is
// still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
