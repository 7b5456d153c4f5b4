package rtkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a [RedisBackplane]. Client is required; the zero
// value of every other field is a documented default.
type RedisOptions struct {
	// Client is the Redis connection: a *redis.Client (standalone or
	// Sentinel failover) or a *redis.ClusterClient, for which the backplane
	// uses sharded pub/sub. Close does not close it.
	//
	// Publish batches are never retried by the backplane; a client with
	// MaxRetries > 0 may retry a batch whose reply was lost and so publish
	// it twice. Set MaxRetries to -1 for at-most-once batches.
	Client redis.UniversalClient
	// Prefix starts every key and channel name. Default "rtkit:". The
	// topic's keys are "<Prefix>{<topic>}", so that all of a topic's keys
	// share one Cluster hash slot.
	Prefix string
	// HistorySize, HistoryTTL, TopicHistory and MaxMessageSize mean what
	// they mean in [MemoryOptions], with the same defaults. Trimming to
	// HistorySize is exact.
	HistorySize    int
	HistoryTTL     time.Duration
	TopicHistory   func(topic string) (size int, ttl time.Duration)
	MaxMessageSize int
	// HealthCheck is how long a subscription connection may stay silent
	// before it is pinged; a connection silent for twice as long is
	// replaced. Default 10s.
	HealthCheck time.Duration
	// Logger receives connection errors and recoveries. Default
	// slog.Default().
	Logger *slog.Logger
}

// RedisBackplane is the [Backplane] for many nodes, over Redis. Each
// topic is a Redis stream (its history) and a pub/sub channel (its live
// messages).
//
// # Publishing
//
// Concurrent publishes are batched: while one batch is on the wire, the
// next one gathers, and it is sent as one pipeline, with one script call
// per topic that appends every message to the stream (trimmed by count
// and age) and publishes them together. A lone publish costs one round
// trip; under load, throughput grows with the batch instead of being
// bound by round trips. Messages are never reordered within a topic.
//
// # Subscribing
//
// A node holds one Redis subscription per topic, whatever the number of
// its local subscribers, and drops it when the last one leaves. A
// standalone client shares one connection for all topics; a Cluster
// client uses one connection per node and sharded pub/sub. When a
// connection fails, the backplane reconnects with backoff, subscribes
// again, and reads the stream from the last message it delivered, so
// subscribers miss nothing; if the stream no longer holds that message
// (Redis restarted and lost it, or it was trimmed), they get
// [Handler.HandleGap] instead of a silent gap.
//
// # Goroutines
//
// NewRedisBackplane starts none. The first Publish starts the batch
// writer; each connection for subscriptions has a reader and a manager
// goroutine. Close ends them all and waits for them.
//
// Limitation: on a Cluster, a topic's subscription stays on the node that
// owned its slot when the topic was first subscribed; resharding a slot
// with active subscriptions needs the subscribers to resubscribe.
type RedisBackplane struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient
	prefix  string
	cfg     limitsConfig
	health  time.Duration
	log     *slog.Logger
	pubCmd  string // PUBLISH or SPUBLISH

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	pmu     sync.Mutex // guards the publish queue
	pending []*pubReq
	writing bool // the writer goroutine runs
	wake    chan struct{}

	mu     sync.Mutex // guards topics and shards
	topics map[string]*redisTopic
	shards map[string]*redisShard
}

var _ Backplane = (*RedisBackplane)(nil)

// NewRedisBackplane returns a RedisBackplane configured by opts. It
// returns an error if opts.Client is nil or a client kind the backplane
// cannot route scripts for (redis.Ring).
func NewRedisBackplane(opts RedisOptions) (*RedisBackplane, error) {
	b := &RedisBackplane{
		client: opts.Client,
		prefix: opts.Prefix,
		cfg:    newLimitsConfig(opts.HistorySize, opts.HistoryTTL, opts.MaxMessageSize, opts.TopicHistory),
		health: opts.HealthCheck,
		log:    opts.Logger,
		pubCmd: "PUBLISH",
		wake:   make(chan struct{}, 1),
		topics: make(map[string]*redisTopic),
		shards: make(map[string]*redisShard),
	}
	switch c := opts.Client.(type) {
	case nil:
		return nil, errors.New("rtkit: RedisOptions.Client is nil")
	case *redis.Ring:
		return nil, errors.New("rtkit: redis.Ring is not supported; use a Client or ClusterClient")
	case *redis.ClusterClient:
		b.cluster, b.pubCmd = c, "SPUBLISH"
	}
	if b.prefix == "" {
		b.prefix = "rtkit:"
	}
	if b.health <= 0 {
		b.health = 10 * time.Second
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// key returns the stream key and channel name of a topic.
func (b *RedisBackplane) key(topic string) string {
	return b.prefix + "{" + topic + "}"
}

// pubReq is one Publish waiting for its batch.
type pubReq struct {
	topic string
	data  []byte
	eph   bool
	id    ID
	err   error
	done  chan struct{}
}

// Publish implements [Backplane.Publish]. It waits for Redis to confirm
// the message, or for ctx; a Publish abandoned by ctx may still complete.
func (b *RedisBackplane) Publish(ctx context.Context, topic string, data []byte, opts PublishOptions) (ID, error) {
	if err := b.cfg.checkPublish(topic, data); err != nil {
		return ID{}, err
	}
	if err := ctx.Err(); err != nil {
		return ID{}, err
	}
	r := &pubReq{topic: topic, data: append(make([]byte, 0, len(data)), data...), eph: opts.Ephemeral, done: make(chan struct{})}
	b.pmu.Lock()
	if b.closed.Load() {
		b.pmu.Unlock()
		return ID{}, ErrClosed
	}
	b.pending = append(b.pending, r)
	if !b.writing {
		b.writing = true
		b.wg.Add(1)
		go b.writeLoop()
	}
	b.pmu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.id, r.err
	case <-ctx.Done():
		return ID{}, ctx.Err()
	}
}

// maxScriptBatch bounds the messages of one script call, so that a burst
// on one topic does not block Redis for long.
const (
	maxScriptBatch = 256
	maxScriptBytes = 1 << 20
)

// writeLoop sends queued publishes in batches until Close, then sends
// what is left.
func (b *RedisBackplane) writeLoop() {
	defer b.wg.Done()
	var spare []*pubReq
	for {
		select {
		case <-b.wake:
		case <-b.ctx.Done():
		}
		b.pmu.Lock()
		batch := b.pending
		if len(batch) > 0 {
			b.pending = spare[:0] // spare and batch never share an array
		}
		b.pmu.Unlock()
		if len(batch) == 0 {
			if b.ctx.Err() != nil {
				return
			}
			continue
		}
		b.flush(batch)
		clear(batch)
		spare = batch
	}
}

// scriptCall is one publishScript call: consecutive messages of a topic.
type scriptCall struct {
	topic string
	reqs  []*pubReq
	cmd   *redis.Cmd
}

// flush publishes a batch: one script call per topic (per chunk), all in
// one pipeline.
func (b *RedisBackplane) flush(batch []*pubReq) {
	var calls []*scriptCall
	open := make(map[string]*scriptCall)
	size := make(map[*scriptCall]int)
	for _, r := range batch {
		c := open[r.topic]
		if c == nil || len(c.reqs) >= maxScriptBatch || size[c]+len(r.data) > maxScriptBytes {
			c = &scriptCall{topic: r.topic}
			open[r.topic] = c
			calls = append(calls, c)
		}
		c.reqs = append(c.reqs, r)
		size[c] += len(r.data)
	}
	// Not b.ctx: Close lets accepted publishes finish. The client's own
	// timeouts bound a batch; this bounds it if they are off.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Every command of a pipeline carries its own error, connection
	// errors included, so the per-call errors below are the whole story.
	b.runCalls(ctx, calls, false)
	if slices.ContainsFunc(calls, isNoScript) {
		if err := publishScript.Load(ctx, b.client).Err(); err == nil {
			b.runCalls(ctx, calls, true)
		}
	}
	for _, c := range calls {
		ids, cerr := c.cmd.Slice()
		if cerr == nil && len(ids) != len(c.reqs) {
			cerr = fmt.Errorf("rtkit: publish script returned %d ids for %d messages", len(ids), len(c.reqs))
		}
		for i, r := range c.reqs {
			if cerr != nil {
				r.err = fmt.Errorf("rtkit: publish to %q: %w", r.topic, cerr)
			} else if s, _ := ids[i].(string); s != "" {
				r.id, r.err = ParseID(s)
			}
			close(r.done)
		}
	}
}

func isNoScript(c *scriptCall) bool { return redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") }

// runCalls sends the script calls in one pipeline. With onlyNoScript set,
// it resends only the calls that failed with NOSCRIPT (they did not run).
func (b *RedisBackplane) runCalls(ctx context.Context, calls []*scriptCall, onlyNoScript bool) {
	pipe := b.client.Pipeline()
	n := 0
	for _, c := range calls {
		if onlyNoScript && !isNoScript(c) {
			continue
		}
		lim := b.cfg.limits(c.topic)
		args := make([]any, 0, 3+2*len(c.reqs))
		args = append(args, lim.size, lim.ttl.Milliseconds(), b.pubCmd)
		for _, r := range c.reqs {
			flag := "p"
			if r.eph {
				flag = "e"
			}
			args = append(args, flag, r.data)
		}
		c.cmd = publishScript.EvalSha(ctx, pipe, []string{b.key(c.topic)}, args...)
		n++
	}
	if n > 0 {
		_, _ = pipe.Exec(ctx)
	}
}

// History implements [Backplane.History].
func (b *RedisBackplane) History(ctx context.Context, topic string, opts HistoryOptions) (History, error) {
	if err := CheckTopic(topic); err != nil {
		return History{}, err
	}
	if b.closed.Load() {
		return History{}, ErrClosed
	}
	return b.readHistory(ctx, topic, opts.Since, opts.Limit)
}

// readHistory reads the stream after since (all of it when since is zero).
func (b *RedisBackplane) readHistory(ctx context.Context, topic string, since ID, limit int) (History, error) {
	key := b.key(topic)
	var (
		entries []redis.XMessage
		err     error
	)
	switch {
	case !since.IsZero():
		// Inclusive of since: finding it proves nothing after it was trimmed.
		entries, err = b.client.XRange(ctx, key, since.String(), "+").Result()
	case limit > 0:
		entries, err = b.client.XRevRangeN(ctx, key, "+", "-", int64(limit)).Result()
		for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
			entries[i], entries[j] = entries[j], entries[i]
		}
	default:
		entries, err = b.client.XRange(ctx, key, "-", "+").Result()
	}
	if err != nil {
		return History{}, fmt.Errorf("rtkit: history of %q: %w", topic, err)
	}
	msgs, err := streamMessages(topic, entries)
	if err != nil {
		return History{}, fmt.Errorf("rtkit: history of %q: %w", topic, err)
	}
	h := History{Complete: true}
	if !since.IsZero() {
		h.Complete = len(msgs) > 0 && msgs[0].ID == since
		if h.Complete {
			h.Position = since
			msgs = msgs[1:]
		}
	}
	if n := len(msgs); n > 0 {
		h.Position = msgs[n-1].ID
	}
	if limit > 0 && len(msgs) > limit {
		msgs = msgs[len(msgs)-limit:]
	}
	h.Messages = msgs
	return h, nil
}

// readFromStart reads the whole stream, and whether nothing was ever
// dropped from it (XINFO STREAM: entries-added equals length, Redis 7;
// before 7, whether it holds fewer entries than the history size).
func (b *RedisBackplane) readFromStart(ctx context.Context, topic string) (History, error) {
	key := b.key(topic)
	pipe := b.client.Pipeline()
	rng := pipe.XRange(ctx, key, "-", "+")
	info := pipe.XInfoStream(ctx, key)
	_, _ = pipe.Exec(ctx)
	if err := rng.Err(); err != nil {
		return History{}, fmt.Errorf("rtkit: history of %q: %w", topic, err)
	}
	msgs, err := streamMessages(topic, rng.Val())
	if err != nil {
		return History{}, fmt.Errorf("rtkit: history of %q: %w", topic, err)
	}
	h := History{Messages: msgs, Complete: true}
	if n := len(msgs); n > 0 {
		h.Position = msgs[n-1].ID
	}
	switch err := info.Err(); {
	case err != nil && strings.Contains(err.Error(), "no such key"):
		// Never published to (or expired, or lost in a restart: see the
		// package docs).
	case err != nil:
		return History{}, fmt.Errorf("rtkit: history of %q: %w", topic, err)
	case info.Val().EntriesAdded > 0:
		h.Complete = info.Val().EntriesAdded == info.Val().Length
	default:
		h.Complete = len(msgs) < b.cfg.limits(topic).size
	}
	return h, nil
}

// Close implements [Backplane.Close]. It lets the publishes already
// accepted go out (each batch within the client's timeouts, at most 10
// seconds), ends every subscription and goroutine, and waits for them. It
// does not close the Redis client.
func (b *RedisBackplane) Close() error {
	b.pmu.Lock()
	already := b.closed.Swap(true)
	b.pmu.Unlock()
	if already {
		return nil
	}
	b.cancel()
	b.mu.Lock()
	for _, t := range b.topics {
		for _, s := range t.subs.load() {
			s.closed.Store(true)
		}
	}
	clear(b.topics)
	for _, sh := range b.shards {
		sh.close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

// backoff returns the delay before retry attempt n (from 0): exponential
// from 50ms to 2s, with jitter.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n, 6)
	d = min(d, 2*time.Second)
	return d/2 + rand.N(d/2+1)
}
