package rtkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redisslots"
)

// RedisOptions configure a [RedisBackplane]. Client is required; the zero
// value of every other field is a documented default.
type RedisOptions struct {
	// Client is the Redis connection: a *redis.Client (standalone or
	// Sentinel failover) or a *redis.ClusterClient, for which the backplane
	// uses sharded pub/sub. Close does not close it.
	//
	// Any MaxRetries is safe: a batch that reaches Redis twice (a retry
	// after a lost reply) is published once.
	//
	// NewRedisBackplane adds a hook to a *redis.ClusterClient that
	// refreshes its slot map (at most every 250ms) after a command fails
	// on a connection error or CLUSTERDOWN; go-redis does so by itself only
	// on MOVED or once a minute. Everything else that shares the client
	// (presence, a cache or tasks store) then recovers from a failover as
	// fast as the backplane does. The hook stays after Close.
	Client redis.UniversalClient
	// Prefix starts every key and channel name. Default "rtkit:". A
	// topic's stream is "<Prefix>{<topic>}" and its channel
	// "<Prefix>{<topic>}:db<N>", N being the client's database number (0
	// on a Cluster): Redis pub/sub ignores databases, so without it two
	// applications on two databases of one Redis would receive each
	// other's messages. All of a topic's keys share one Cluster hash slot.
	Prefix string
	// HistorySize, HistoryTTL, TopicHistory and MaxMessageSize mean what
	// they mean in [MemoryOptions], with the same defaults. Trimming to
	// HistorySize is exact.
	HistorySize    int
	HistoryTTL     time.Duration
	TopicHistory   func(topic string) (size int, ttl time.Duration)
	MaxMessageSize int
	// MinReplicas, when positive, makes a publish wait until at least
	// this many replicas of the topic's primary have the message (Redis
	// WAIT after the batch, on its connection, up to a second per
	// attempt) before Publish returns. A message Publish acknowledged
	// then survives a failover to one of those replicas; without it, the
	// old primary may acknowledge a message and die before any replica
	// has it, and a message nobody received is then lost without a gap
	// report. It does not hold back live delivery: subscribers may get a
	// message before it is replicated, and it may still be lost in a
	// failover, reported to them as a gap. A batch the replicas do not
	// confirm is retried like one that failed (published once), and its
	// publishes fail after 10 seconds. Default 0: Publish returns when
	// the primary has the message. On a Cluster, batches then go to each
	// primary's own connection instead of through the client's pipeline.
	MinReplicas int
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
// A batch that fails for a reason that may pass (a lost connection, a
// failover or slot migration under way) is sent again every 200ms or so,
// with the batches that follow it, until it succeeds or 10 seconds pass;
// on a Cluster the slot map is refreshed first (at most every 250ms). The
// publishes of other topics, on nodes that answer, do not wait for it. Each batch carries a per-node sequence number that the
// script checks before it appends anything, so a batch that reaches Redis
// twice (this retry, or the client's own MaxRetries after a lost reply) is
// published once and returns the same IDs. Redis remembers a node's newest
// batch of a topic for two minutes, in the key
// "<Prefix>{<topic>}:batch:<node>".
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
// [Handler.HandleGap] instead of a silent gap. Which server answers does
// not matter: stream IDs survive replication, so after a restart or a
// failover the node resumes after the last message it delivered, and
// reports a gap only when that message is gone, never replaying history.
//
// Each live payload names the stream entry that preceded it. A node
// delivers it only if that is the last message it delivered; otherwise
// (it missed a payload, or the payload came from elsewhere: another
// database's publisher on an old version, a forged PUBLISH) it reads the
// stream after its last message and delivers what the stream holds, so a
// made-up ID is never delivered on that path. A forged payload that names
// the right previous entry is delivered; the next real message then shows
// that the node's position is not in the stream, and its subscribers get
// a gap and the messages that follow rather than silence.
//
// # Goroutines
//
// NewRedisBackplane starts none. The first Publish starts the batch
// writer; each connection for subscriptions has a reader and a manager
// goroutine; on a Cluster, the first subscription starts the slot
// watchdog (below). Close ends them all and waits for them.
//
// # Failover and resharding
//
// On a Cluster, a topic's subscription follows its hash slot: when the
// connection to the slot's primary fails, or the primary drops the
// subscription because the slot moved (resharding, or the node became a
// replica), the backplane refreshes the client's slot map (go-redis
// refreshes it by itself only on MOVED or once a minute), subscribes the
// topic on the slot's primary, and reads the stream there after the last
// delivered message. A node that drops a slot's subscriptions does so
// before the client's map stops naming it: the backplane reloads the map
// and waits (up to 2 seconds) for it to name another node rather than
// subscribe on the demoted one again, where sharded messages may never
// arrive. As a backstop, a watchdog reloads the slot map every second
// (one CLUSTER SLOTS per backplane holding subscriptions) and moves any
// subscription that is not on the primary the map names, reading its
// stream as after a move: whatever was missed ends in a resubscription
// and a stream read within a few seconds, never in silence. With
// Sentinel (redis.NewFailoverClient), the client finds the new primary
// and the backplane resubscribes and resumes the same way. Stream IDs
// survive replication, so subscribers get neither a gap nor a duplicate,
// unless the new primary lacks the last message a node delivered
// (asynchronous replication lost the old primary's last writes): then its
// subscribers get [Handler.HandleGap] (TestRedisBackplaneUnreplicatedTailIsAGap).
// Messages Redis acknowledged and lost before any node received them are
// lost without a gap report: nobody can know of them. Where that matters,
// [RedisOptions.MinReplicas] makes Publish return only once replicas have
// the message (measured: a sequential publish took 1.3–1.8x as long with
// MinReplicas 1, 0.94–1.5ms instead of 0.72–0.86ms, on loopback with the
// race detector on a loaded machine, two runs of
// TestRedisBackplaneClusterMinReplicas).
//
// Publishes to the failed slot fail, or wait in the retry described
// above, until a replica takes over: about cluster-node-timeout plus one
// to two seconds on a Cluster (Redis marks the primary failed after the
// timeout, and the replica waits 0.5–1s more before its election), and
// the sentinels' down-after-milliseconds plus about a second with
// Sentinel. Subscribers resume within about half a second after that.
// Measured on loopback with three publishing nodes (50 publishes a second
// per topic per node), the race detector on, on a shared 2-vCPU machine,
// in TestRedisBackplaneClusterFailover, TestRedisBackplaneSentinelFailover
// and the resharding tests (several runs each):
//
//   - Cluster, cluster-node-timeout 2s, SIGKILL of a busy slot's primary:
//     replica promoted 3.7–4.7s after the kill; publishes to the slot
//     acknowledged again after 3.9–5.1s; every member on every node had
//     messages published after the kill 4.2–5.3s after it. Of 750–2,200
//     member deliveries of acknowledged messages per run, none was lost
//     or duplicated. In two runs of eight each member of the failed
//     slot's topics got one gap report: it had received, live, messages
//     that the old primary had not replicated (and had not acknowledged).
//   - Sentinel, down-after-milliseconds 1s: replica promoted after
//     1.5–2.4s, publishes acknowledged again after 1.6–2.6s, every
//     member had new messages after 2.5–3.8s; 441–2,160 deliveries, none
//     lost; in one run of three, in each of two series, each member got
//     a gap report, for the same reason.
//   - Resharding a busy, subscribed slot: publishes waited at most
//     0.12s, nothing lost, no gap. A manual failover (CLUSTER FAILOVER):
//     members live again within 0.15–0.35s, up to 1.7s with another
//     process spinning on the CPU (48 runs), nothing lost, no gap.
type RedisBackplane struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient
	prefix  string
	cfg     limitsConfig
	health  time.Duration
	minRepl int // RedisOptions.MinReplicas
	log     *slog.Logger
	pubCmd  string                // PUBLISH or SPUBLISH
	node    string                // this backplane's name in batch keys
	db      int                   // the client's database number, in channel names
	slots   *redisslots.Refresher // a Cluster client's slot map refresher

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	pmu     sync.Mutex // guards the publish queue
	pending []*pubReq
	writing bool   // the writer goroutine runs
	seq     uint64 // the last batch sequence number; only the writer uses it
	wake    chan struct{}

	mu       sync.Mutex // guards topics, shards and watching
	topics   map[string]*redisTopic
	shards   map[string]*redisShard
	watching bool // watchSlots runs
}

var _ Backplane = (*RedisBackplane)(nil)

// NewRedisBackplane returns a RedisBackplane configured by opts. It
// returns an error if opts.Client is nil or a client kind the backplane
// cannot route scripts for (redis.Ring).
func NewRedisBackplane(opts RedisOptions) (*RedisBackplane, error) {
	b := &RedisBackplane{
		client:  opts.Client,
		prefix:  opts.Prefix,
		cfg:     newLimitsConfig(opts.HistorySize, opts.HistoryTTL, opts.MaxMessageSize, opts.TopicHistory),
		health:  opts.HealthCheck,
		minRepl: max(opts.MinReplicas, 0),
		log:     opts.Logger,
		pubCmd:  "PUBLISH",
		node:    strconv.FormatUint(rand.Uint64(), 36),
		wake:    make(chan struct{}, 1),
		topics:  make(map[string]*redisTopic),
		shards:  make(map[string]*redisShard),
	}
	switch c := opts.Client.(type) {
	case nil:
		return nil, errors.New("rtkit: RedisOptions.Client is nil")
	case *redis.Ring:
		return nil, errors.New("rtkit: redis.Ring is not supported; use a Client or ClusterClient")
	case *redis.ClusterClient:
		b.cluster, b.pubCmd = c, "SPUBLISH"
		b.slots = redisslots.Follow(c)
	case *redis.Client:
		b.db = c.Options().DB
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

// channel returns the pub/sub channel of a topic. Redis pub/sub ignores
// the database number, so the channel carries it: backplanes on two
// databases of one Redis never hear each other.
func (b *RedisBackplane) channel(topic string) string {
	return b.key(topic) + ":db" + strconv.Itoa(b.db)
}

// batchKey returns the key that remembers this node's newest batch of a
// topic.
func (b *RedisBackplane) batchKey(topic string) string {
	return b.key(topic) + ":batch:" + b.node
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
// what is left, retries included.
func (b *RedisBackplane) writeLoop() {
	defer b.wg.Done()
	var (
		spare []*pubReq
		retry []*scriptCall // calls to send again, oldest first
	)
	for {
		var again <-chan time.Time
		if len(retry) > 0 {
			again = time.After(retryDelay/2 + rand.N(retryDelay/2))
		}
		select {
		case <-b.wake:
		case <-again:
		case <-b.ctx.Done():
			if len(retry) > 0 {
				<-time.After(retryDelay) // finishing: no wake-ups to wait for
			}
		}
		b.pmu.Lock()
		batch := b.pending
		if len(batch) > 0 {
			b.pending = spare[:0] // spare and batch never share an array
		}
		b.pmu.Unlock()
		if len(batch) == 0 && len(retry) == 0 {
			if b.ctx.Err() != nil {
				return
			}
			continue
		}
		retry = b.flush(retry, batch)
		if len(batch) > 0 { // else batch is still b.pending
			clear(batch)
			spare = batch
		}
	}
}

// retryDelay is the pause before a failed call is sent again, and
// maxRetryTime how long it is retried before its publishes fail.
const (
	retryDelay   = 200 * time.Millisecond
	maxRetryTime = 10 * time.Second
)

// scriptCall is one publishScript call: consecutive messages of a topic.
type scriptCall struct {
	topic    string
	seq      uint64
	reqs     []*pubReq
	cmd      *redis.Cmd
	deadline time.Time // of its retries
	short    bool      // published, but fewer than MinReplicas replicas confirmed it
}

// flush sends the calls to retry and a new batch (one script call per
// topic, per chunk) in one pipeline, completes the publishes of the calls
// that succeed or fail for good, and returns the calls that failed for a
// reason that may pass (a connection error, a failover under way), to be
// sent again, with the same sequence numbers, until maxRetryTime. The
// calls to retry come first, so a topic's messages keep their order: a
// later call of the topic goes to the same node on the same connection.
func (b *RedisBackplane) flush(retry []*scriptCall, batch []*pubReq) []*scriptCall {
	calls := retry
	open := make(map[string]*scriptCall)
	size := make(map[*scriptCall]int)
	now := time.Now()
	for _, r := range batch {
		c := open[r.topic]
		if c == nil || len(c.reqs) >= maxScriptBatch || size[c]+len(r.data) > maxScriptBytes {
			b.seq++
			c = &scriptCall{topic: r.topic, seq: b.seq, deadline: now.Add(maxRetryTime)}
			open[r.topic] = c
			calls = append(calls, c)
		}
		c.reqs = append(c.reqs, r)
		size[c] += len(r.data)
	}
	// Not b.ctx: Close lets accepted publishes finish. The client's own
	// timeouts bound an attempt; this bounds it if they are off.
	ctx, cancel := context.WithTimeout(context.Background(), maxRetryTime)
	defer cancel()
	// Every command of a pipeline carries its own error, connection
	// errors included, so the per-call errors below are the whole story.
	b.runCalls(ctx, calls)
	if slices.ContainsFunc(calls, isNoScript) {
		if err := publishScript.Load(ctx, b.client).Err(); err == nil {
			b.runCalls(ctx, keep(calls, isNoScript))
		}
	}
	var again []*scriptCall
	now = time.Now()
	for _, c := range calls {
		if (c.short || retryable(c.cmd.Err())) && now.Before(c.deadline) {
			again = append(again, c)
			continue
		}
		ids, cerr := c.cmd.Slice()
		if cerr == nil && c.short {
			cerr = fmt.Errorf("%w (%d asked for)", ErrNotReplicated, b.minRepl)
		}
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
	if len(again) > 0 {
		b.refreshSlots()
	}
	return again
}

// keep returns the calls for which f is true, in a new slice.
func keep(calls []*scriptCall, f func(*scriptCall) bool) []*scriptCall {
	var out []*scriptCall
	for _, c := range calls {
		if f(c) {
			out = append(out, c)
		}
	}
	return out
}

func isNoScript(c *scriptCall) bool { return redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") }

// retryable reports whether a command that failed with err may succeed if
// sent again soon: the connection failed, or Redis is failing over,
// loading, or moving the slot.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // a connection error
	}
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "MOVED", "ASK", "NOSCRIPT"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// refreshSlots asks a Cluster client to reload its slot map, at most every
// redisslots.MinReload.
func (b *RedisBackplane) refreshSlots() { b.slots.Refresh() }

// ErrNotReplicated is wrapped by the error of a publish that the topic's
// primary accepted but fewer than [RedisOptions.MinReplicas] replicas
// confirmed within the retries: the message may still be delivered, and
// may be lost in a failover.
var ErrNotReplicated = errors.New("rtkit: publish not confirmed by enough replicas")

// waitTimeout is how long one attempt waits for the replicas.
const waitTimeout = time.Second

// runCalls sends the script calls in one pipeline; with MinReplicas, a
// WAIT follows them on the same connection (one per Cluster primary).
func (b *RedisBackplane) runCalls(ctx context.Context, calls []*scriptCall) {
	if len(calls) == 0 {
		return
	}
	if b.minRepl > 0 && b.cluster != nil {
		b.runCallsPerNode(ctx, calls)
		return
	}
	b.runPipeline(ctx, b.client, calls)
}

// runPipeline sends the calls in one pipeline of c, then the WAIT.
func (b *RedisBackplane) runPipeline(ctx context.Context, c redis.UniversalClient, calls []*scriptCall) {
	pipe := c.Pipeline()
	for _, c := range calls {
		lim := b.cfg.limits(c.topic)
		args := make([]any, 0, 5+2*len(c.reqs))
		args = append(args, lim.size, lim.ttl.Milliseconds(), b.pubCmd, b.channel(c.topic), c.seq)
		for _, r := range c.reqs {
			flag := "p"
			if r.eph {
				flag = "e"
			}
			args = append(args, flag, r.data)
		}
		c.cmd = publishScript.EvalSha(ctx, pipe, []string{b.key(c.topic), b.batchKey(c.topic)}, args...)
		c.short = false
	}
	var wait *redis.Cmd
	if b.minRepl > 0 {
		wait = pipe.Do(ctx, "WAIT", b.minRepl, waitTimeout.Milliseconds())
	}
	_, _ = pipe.Exec(ctx)
	if wait == nil {
		return
	}
	n, err := wait.Int64()
	for _, c := range calls {
		c.short = c.cmd.Err() == nil && (err != nil || n < int64(b.minRepl))
	}
}

// runCallsPerNode sends each Cluster primary its calls and a WAIT on one
// of its connections: the cluster client's pipeline would send the WAIT,
// which has no key, to any node. A call sent to a node that no longer
// serves its slot fails with MOVED and is retried after a slot map
// refresh.
func (b *RedisBackplane) runCallsPerNode(ctx context.Context, calls []*scriptCall) {
	nodes := make(map[string]*redis.Client)
	groups := make(map[string][]*scriptCall)
	for _, c := range calls {
		n, err := b.cluster.MasterForKey(ctx, b.key(c.topic))
		if err != nil {
			c.cmd = redis.NewCmd(ctx)
			c.cmd.SetErr(err)
			c.short = false
			continue
		}
		addr := n.Options().Addr
		nodes[addr] = n
		groups[addr] = append(groups[addr], c)
	}
	var wg sync.WaitGroup
	for addr, cs := range groups {
		wg.Go(func() { b.runPipeline(ctx, nodes[addr], cs) })
	}
	wg.Wait()
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
