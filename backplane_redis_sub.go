package rtkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTopic is a topic with local subscribers on this node.
type redisTopic struct {
	name, key string
	size      int           // history size, to judge recovery from an empty start
	ttl       time.Duration // history TTL, likewise
	shard     *redisShard
	subs      subSet // changed under RedisBackplane.mu

	// Guarded by shard.mu.
	needSync bool // subscribed (again) and not yet read from the stream

	mu        sync.Mutex // orders deliveries; guards below
	live      bool       // synced: deliver live messages; else hold them in buf
	gen       uint64     // connection generation; a sync of an older one is void
	hasLast   bool       // last is known from the stream
	last      ID         // newest message delivered (or known at first sync)
	runID     string     // the Redis server's run_id at the last sync
	downSince time.Time  // when live delivery was suspended
	buf       []*Message // live messages held while syncing
	bufFull   bool       // buf overflowed: read the stream again
	ready     chan struct{}
	isReady   bool
}

// redisShard is one subscription connection: all topics on a standalone
// Redis, or the topics of one Cluster node.
type redisShard struct {
	b    *RedisBackplane
	node redis.UniversalClient

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
			sh = b.newShard(node)
			b.shards[addr] = sh
		}
		lim := b.cfg.limits(topic)
		t = &redisTopic{name: topic, key: key, size: lim.size, ttl: lim.ttl, shard: sh, ready: make(chan struct{})}
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

func (b *RedisBackplane) newShard(node redis.UniversalClient) *redisShard {
	sh := &redisShard{
		b:        b,
		node:     node,
		channels: make(map[string]*redisTopic),
		pending:  make(map[string]int),
		wake:     make(chan struct{}, 1),
	}
	sh.ps = sh.newPubSub()
	b.wg.Add(2)
	go sh.readLoop()
	go sh.manageLoop()
	return sh
}

func (sh *redisShard) newPubSub() *redis.PubSub {
	if sh.b.cluster != nil {
		return sh.node.SSubscribe(sh.b.ctx)
	}
	return sh.node.Subscribe(sh.b.ctx)
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
	sh.channels[t.key] = t
	sh.pending[t.key]++
	t.needSync = true
	sh.cmds = append(sh.cmds, shardCmd{subscribe: true, channel: t.key})
	sh.mu.Unlock()
	sh.signal()
}

// unsubscribe queues an UNSUBSCRIBE for t; the caller holds b.mu.
func (sh *redisShard) unsubscribe(t *redisTopic) {
	sh.mu.Lock()
	if sh.channels[t.key] == t {
		delete(sh.channels, t.key)
	}
	sh.cmds = append(sh.cmds, shardCmd{channel: t.key})
	sh.mu.Unlock()
	sh.signal()
}

func (sh *redisShard) close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_ = sh.ps.Close()
}

// readLoop receives from the subscription connection and delivers; on a
// connection failure it replaces the connection and queues every topic to
// be subscribed and read from the stream again.
func (sh *redisShard) readLoop() {
	defer sh.b.wg.Done()
	ctx := sh.b.ctx
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
			sh.b.log.Warn("rtkit: backplane subscription connection failed; reconnecting", "err", err, "attempt", fails+1)
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
		t.suspend()
	}
	_ = old.Close()
	sh.signal()
}

// suspend holds live messages until the topic is read from the stream
// again, and voids reads already under way.
func (t *redisTopic) suspend() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live = false
	t.gen++
	if t.downSince.IsZero() {
		t.downSince = time.Now()
	}
}

// resync suspends t and queues a stream read for it, as after a reconnect.
func (sh *redisShard) resync(t *redisTopic) {
	t.suspend()
	sh.mu.Lock()
	if sh.channels[t.key] == t {
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
		sh.resync(t)
	default:
		sh.mu.Unlock()
	}
}

// unsubscribed handles an unsubscription: one the node did not ask for
// (a Cluster slot moved away) leaves the topic without live messages, so
// its subscribers are told instead of left waiting in silence.
func (sh *redisShard) unsubscribed(channel string) {
	sh.mu.Lock()
	t := sh.channels[channel]
	wanted := t != nil && sh.pending[channel] == 0
	sh.mu.Unlock()
	if !wanted {
		return
	}
	sh.b.log.Error("rtkit: Redis dropped a backplane subscription (slot migrated?); subscribers must resubscribe", "topic", t.name)
	t.mu.Lock()
	t.subs.dispatchGap()
	t.mu.Unlock()
}

// deliver dispatches a pub/sub payload to the topic's subscribers.
func (sh *redisShard) deliver(channel, payload string) {
	sh.mu.Lock()
	t := sh.channels[channel]
	sh.mu.Unlock()
	if t == nil {
		return
	}
	msgs, err := decodePayload(t.name, payload)
	if err != nil {
		// Its messages are in the stream: read them from there.
		sh.b.log.Error("rtkit: malformed backplane payload; reading the topic's stream instead", "topic", t.name, "err", err)
		sh.resync(t)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.live {
		// Past the bound, hold nothing more: a hole in buf would hide
		// messages. The stream read after this one recovers them.
		if t.bufFull || len(t.buf)+len(msgs) > maxRecoveryBuffer {
			t.bufFull = true
			return
		}
		t.buf = append(t.buf, msgs...)
		return
	}
	for _, m := range msgs {
		t.dispatchLocked(m)
	}
}

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
	ctx := sh.b.ctx
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
			if !sleepCtx(ctx, backoff(fails)) {
				return
			}
			fails++
			sh.mu.Lock()
			for _, t := range syncs {
				if sh.channels[t.key] == t && !t.needSync {
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

// How a topic is read from its stream.
type syncMode int

const (
	syncFirst  syncMode = iota // first subscription: learn the newest ID
	syncResume                 // after a reconnect: everything after the last delivered
	syncReset                  // the server changed (restart, failover): all of it, after a gap
)

// sync reads each topic's stream in one pipeline and releases the
// messages held meanwhile.
func (sh *redisShard) sync(ctx context.Context, topics []*redisTopic) error {
	runID, err := sh.serverRunID(ctx)
	if err != nil {
		return err
	}
	pipe := sh.b.client.Pipeline()
	type read struct {
		t       *redisTopic
		mode    syncMode
		from    ID
		gen     uint64
		downFor time.Duration
		entries *redis.XMessageSliceCmd
	}
	reads := make([]read, len(topics))
	for i, t := range topics {
		t.mu.Lock()
		r := read{t: t, from: t.last, gen: t.gen}
		switch {
		case !t.hasLast:
			r.mode = syncFirst
		case t.runID != runID:
			r.mode = syncReset
		default:
			r.mode = syncResume
		}
		if !t.downSince.IsZero() {
			r.downFor = time.Since(t.downSince)
		}
		t.mu.Unlock()
		switch {
		case r.mode == syncFirst:
			r.entries = pipe.XRevRangeN(ctx, t.key, "+", "-", 1)
		case r.mode == syncReset:
			r.entries = pipe.XRange(ctx, t.key, "-", "+")
		case r.from.IsZero():
			r.entries = pipe.XRangeN(ctx, t.key, "-", "+", int64(t.size)+1)
		default:
			r.entries = pipe.XRange(ctx, t.key, r.from.String(), "+")
		}
		reads[i] = r
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var again []*redisTopic
	for _, r := range reads {
		msgs, err := streamMessages(r.t.name, r.entries.Val())
		if err != nil {
			return err
		}
		if r.t.applySync(r.gen, r.mode, r.from, r.downFor, runID, msgs) {
			again = append(again, r.t)
		}
	}
	if len(again) > 0 {
		sh.mu.Lock()
		sh.syncs = append(sh.syncs, again...)
		sh.mu.Unlock()
		sh.signal()
	}
	return nil
}

// serverRunID returns the run_id of the Redis server the shard talks to:
// it changes when Redis restarts or fails over, which may have lost
// messages that a stream read cannot reveal.
func (sh *redisShard) serverRunID(ctx context.Context) (string, error) {
	info, err := sh.node.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// applySync delivers what a stream read found and the messages held
// meanwhile, then goes live. It reports whether held messages were
// dropped, so the stream must be read again.
func (t *redisTopic) applySync(gen uint64, mode syncMode, from ID, downFor time.Duration, runID string, msgs []*Message) (again bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		// The connection failed since the read; the topic is queued for
		// a fresh one after it is subscribed again.
		return false
	}
	switch mode {
	case syncFirst:
		if len(msgs) > 0 {
			t.last = msgs[0].ID
		}
		t.hasLast = true
	case syncReset:
		// Another server (or the same one, restarted): what it holds
		// cannot prove continuity, and its IDs may even run lower.
		t.subs.dispatchGap()
		t.last = ID{}
		for _, m := range msgs {
			t.dispatchLocked(m)
		}
	case syncResume:
		complete := len(msgs) > 0 && msgs[0].ID == from
		if from.IsZero() {
			// Nothing was ever delivered: complete unless trimming (by
			// count, or by age over a long outage) may have dropped
			// messages published since.
			complete = len(msgs) < t.size && (t.ttl == 0 || downFor < t.ttl)
		}
		if !complete {
			t.subs.dispatchGap()
		}
		for _, m := range msgs {
			t.dispatchLocked(m)
		}
	}
	for _, m := range t.buf {
		t.dispatchLocked(m)
	}
	again = t.bufFull
	t.buf, t.bufFull = nil, false
	t.live = !again
	t.runID = runID
	if !again {
		t.downSince = time.Time{}
	}
	if !t.isReady {
		t.isReady = true
		close(t.ready)
	}
	return again
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
