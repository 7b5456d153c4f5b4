package tasks

import (
	"cmp"
	"context"
	"encoding/json"
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

// RedisOptions configure a [RedisStore]. Client is required; the zero
// value of every other field is a documented default.
type RedisOptions struct {
	// Client is the Redis connection: standalone, Sentinel or Cluster.
	// Close does not close it.
	Client redis.UniversalClient
	// Prefix starts every key and channel name. Default "rtkit:tasks:".
	// A queue's keys are "<Prefix>{<queue>}:...", one hash slot per queue.
	Prefix string
	// Retention and RetentionCount bound the final tasks kept, as in
	// [MemoryOptions]: default 24h and 10,000 per queue and state.
	Retention      time.Duration
	RetentionCount int
	// ReconcileEvery is how often the store's maintenance scans a slice of
	// each queue's tasks to repair any that a crash left out of their
	// state's index. Default 1m.
	ReconcileEvery time.Duration
	// Logger receives subscription errors. Default slog.Default().
	Logger *slog.Logger
}

// RedisStore is the [Store] for many nodes, over Redis: durable,
// at-least-once, with any number of runners on any number of nodes.
//
// # Guarantees
//
// Every state change is one Lua script, atomic on the server; an
// acknowledged Enqueue survives any runner's crash (and a Redis restart,
// as far as Redis's own persistence goes). A claimed task is leased to its
// worker: each worker (a runner's [Options.Node]) holds one lease per
// queue, extended by its every claim and renewed every LeaseTTL/4 while it
// runs tasks, so a long task is never taken over from a live worker, and
// when a node dies any other node's maintenance hands all its tasks back
// once its lease expires (LeaseTTL, 8s by default). Every claim writes a
// new fencing token; a late Finish, Renew or Progress from a worker that
// lost its lease is rejected with [ErrLeaseLost]. Times are the Redis
// server's. Needs Redis 6.2 or later.
//
// A call that go-redis retries after a read timeout (its MaxRetries),
// though Redis ran it, is applied once: enqueue, claim, retry, cancel
// and delete calls carry a nonce that the script marks as applied for
// 30s (one short key per call), and a repeat returns what the first did;
// finish recognises its own outcome in the task's state; the other
// scripts converge. An enqueue never changes a task whose ID exists.
//
// # Throughput
//
// Concurrent Enqueue and Finish calls are batched: while one batch is on
// the wire, the next gathers, and it goes as one script call per queue in
// one pipeline. Claim leases a batch of tasks per round trip. An idle
// runner waits on a pub/sub channel per queue that every enqueue and retry
// publishes to, so a new task is picked up within a round trip, not at the
// next poll (a 2s backstop covers lost notifications).
//
// Inside Redis, a task's fields live in per-queue hashes keyed by task ID
// and its state in one short line, so a script touches a whole batch with
// a few variadic commands and does little string work per task (the
// layout is documented in redis_lua.go). BenchmarkRedisScripts measures
// the Redis server's CPU per task in batches of 50: 8–10 µs to enqueue,
// 6–8 µs to claim and 7–10 µs to finish on a shared 2-vCPU VM, where the
// earlier layout of one hash per task took 11–13, 14–17 and 16–19 µs.
//
// # Losing Redis's data
//
// When Redis loses its data (a restart without persistence, a failover
// to a replica that lagged), tasks it lost are gone, and the store
// carries on with those it has. Each store registers the queues it
// enqueues to or claims from in a set that Maintain, Get, List and
// Counts read; a queue missing from that set is registered again by
// the next of those calls in any process that uses the queue, so a
// crashed worker's tasks are still taken over and inspection still
// finds them. A queue that no live process uses is found again once a
// task is enqueued to it.
//
// # Goroutines
//
// NewRedisStore starts none. Batches run in a goroutine that exits when
// no work is queued; the first Wait starts a pub/sub reader. Close ends
// them and waits for them.
type RedisStore struct {
	client    redis.UniversalClient
	prefix    string
	ret       time.Duration
	keep      int
	reconcile time.Duration
	log       *slog.Logger

	closed    atomic.Bool
	wg        sync.WaitGroup
	enq       batcher[*enqReq]
	fin       batcher[*finReq]
	known     sync.Map // queue name → bool: queues this process enqueued to or claimed from; true once seen registered
	skew      atomic.Int64
	wait      waiter
	lastRec   time.Time // last reconcile; Maintain only
	cursors   map[string]uint64
	maintain  sync.Mutex
	nonces    atomic.Uint64 // with nonceBase, the nonces of script calls
	nonceBase string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore configured by opts. It returns an
// error if opts.Client is nil or a redis.Ring. Given a
// *redis.ClusterClient, it adds a hook to it that refreshes the client's
// slot map after a command fails on a connection error or CLUSTERDOWN (at
// most four times a second), so that the store follows a failover.
func NewRedisStore(opts RedisOptions) (*RedisStore, error) {
	s := &RedisStore{
		client:    opts.Client,
		prefix:    cmp.Or(opts.Prefix, "rtkit:tasks:"),
		ret:       cmp.Or(opts.Retention, DefaultRetention),
		keep:      cmp.Or(max(opts.RetentionCount, 0), DefaultRetentionCount),
		reconcile: cmp.Or(max(opts.ReconcileEvery, 0), time.Minute),
		log:       cmp.Or(opts.Logger, slog.Default()),
		cursors:   make(map[string]uint64),
		nonceBase: strconv.FormatUint(rand.Uint64(), 36) + ".",
	}
	switch opts.Client.(type) {
	case nil:
		return nil, errors.New("tasks: RedisOptions.Client is nil")
	case *redis.Ring:
		return nil, errors.New("tasks: redis.Ring is not supported; use a Client or ClusterClient")
	}
	if strings.ContainsAny(s.prefix, "{}") {
		return nil, errors.New("tasks: RedisOptions.Prefix must not contain '{' or '}'")
	}
	// Follow a Cluster failover in about the cluster's node timeout, not
	// the minute go-redis takes to refresh its slot map by itself.
	redisslots.Follow(opts.Client)
	s.enq = batcher[*enqReq]{wg: &s.wg, flush: s.flushEnqueue}
	s.fin = batcher[*finReq]{max: 1, wg: &s.wg, flush: s.flushFinish}
	s.wait.s = s
	return s, nil
}

// nonce returns a name for one script call, unique across processes, by
// which the script recognises a client's retry of the call.
func (s *RedisStore) nonce() string {
	return s.nonceBase + strconv.FormatUint(s.nonces.Add(1), 36)
}

func (s *RedisStore) base(queue string) string { return s.prefix + "{" + queue + "}:" }

func (s *RedisStore) queuesKey() string { return s.prefix + "queues" }

func (s *RedisStore) retMS() int64 {
	if s.ret < 0 {
		return 0
	}
	return s.ret.Milliseconds()
}

func (s *RedisStore) check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// batchesInFlight is how many batches a batcher keeps on the wire: while
// one waits for its reply, the next ones gather and go, so round trips
// overlap instead of bounding the rate.
const batchesInFlight = 2

// batcher sends queued requests in batches from up to batchesInFlight
// goroutines, which exit when the queue is empty.
type batcher[R any] struct {
	max     int // batches in flight; default batchesInFlight
	wg      *sync.WaitGroup
	flush   func([]R)
	mu      sync.Mutex
	pending []R
	running int
}

func (b *batcher[R]) add(r R) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, r)
	if b.running < cmp.Or(b.max, batchesInFlight) {
		b.running++
		b.wg.Add(1)
		go b.loop()
	}
}

func (b *batcher[R]) loop() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.flush(batch)
	}
}

// call is one script call of a pipeline.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// runCalls sends the calls in one pipeline, and those that failed with
// NOSCRIPT (they did not run) again with their source.
func (s *RedisStore) runCalls(ctx context.Context, calls []*call) {
	pipe := s.client.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	var again []*call
	for _, c := range calls {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		pipe := s.client.Pipeline()
		for _, c := range again {
			c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
}

func (s *RedisStore) run(ctx context.Context, script *redis.Script, queue string, args ...any) *redis.Cmd {
	c := &call{script: script, keys: []string{s.base(queue)}, args: args}
	s.runCalls(ctx, []*call{c})
	return c.cmd
}

type enqReq struct {
	t        *Task
	periodic string
	tick     int64
	dup      string // holder of the unique key
	enqueued bool
	err      error
	done     chan struct{}
}

func taskArgs(args []any, t *Task) []any {
	delay := int64(0)
	if !t.RunAt.IsZero() {
		delay = max(time.Until(t.RunAt).Milliseconds(), 0)
	}
	return append(args, t.ID, packDef(t), delay, t.UniqueKey, t.UniqueTTL.Milliseconds())
}

// packDef encodes the parts of a task that never change as one string,
// fields separated by NUL (which neither names nor JSON contain), the
// payload last. One field is cheaper for Redis to store and return than
// eight.
func packDef(t *Task) string {
	var b strings.Builder
	b.Grow(64 + len(t.ID) + len(t.Type) + len(t.Payload))
	b.WriteString(t.ID)
	b.WriteByte(0)
	b.WriteString(t.Type)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(t.MaxAttempts))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(t.Timeout.Milliseconds(), 10))
	b.WriteByte(0)
	if t.Backoff != (Backoff{}) {
		fmt.Fprintf(&b, "%d,%d,%g,%g", t.Backoff.Initial.Milliseconds(), t.Backoff.Max.Milliseconds(), t.Backoff.Factor, t.Backoff.Jitter)
	}
	b.WriteByte(0)
	b.WriteString(t.Periodic)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(t.UniqueTTL.Milliseconds(), 10))
	b.WriteByte(0)
	b.Write(t.Payload)
	return b.String()
}

// unpackStored fills t from a stored definition: the enqueue time in ms,
// NUL, and packDef's string.
func unpackStored(t *Task, stored string) {
	enq, def, _ := strings.Cut(stored, "\x00")
	if ms, _ := strconv.ParseInt(enq, 10, 64); ms > 0 {
		t.EnqueuedAt = time.UnixMilli(ms)
	}
	unpackDef(t, def)
}

// fence is the state line the claim of l wrote (see redis_lua.go): a
// store call for the lease goes through only while the line is unchanged.
func fence(l *Lease) string {
	return "active|" + strconv.Itoa(l.Attempt) + "|" + strconv.FormatInt(l.Token, 10) + "|" +
		strconv.FormatInt(l.StartedAt.UnixMilli(), 10) + "|" + l.Worker
}

// unpackDef fills t from packDef's string.
func unpackDef(t *Task, def string) {
	var f [7]string
	for i := range f {
		f[i], def, _ = strings.Cut(def, "\x00")
	}
	t.ID, t.Type = f[0], f[1]
	t.MaxAttempts, _ = strconv.Atoi(f[2])
	ms, _ := strconv.ParseInt(f[3], 10, 64)
	t.Timeout = time.Duration(ms) * time.Millisecond
	if f[4] != "" {
		var ini, mx int64
		_, _ = fmt.Sscanf(f[4], "%d,%d,%g,%g", &ini, &mx, &t.Backoff.Factor, &t.Backoff.Jitter)
		t.Backoff.Initial, t.Backoff.Max = time.Duration(ini)*time.Millisecond, time.Duration(mx)*time.Millisecond
	}
	t.Periodic = f[5]
	ms, _ = strconv.ParseInt(f[6], 10, 64)
	t.UniqueTTL = time.Duration(ms) * time.Millisecond
	if def != "" {
		t.Payload = json.RawMessage(def)
	}
}

// Enqueue implements [Store].
func (s *RedisStore) Enqueue(ctx context.Context, t *Task) error {
	_, err := s.submit(ctx, &enqReq{t: t})
	return err
}

// EnqueuePeriodic implements [Store].
func (s *RedisStore) EnqueuePeriodic(ctx context.Context, name string, tick time.Time, t *Task) (bool, error) {
	return s.submit(ctx, &enqReq{t: t, periodic: name, tick: tick.UnixMilli()})
}

func (s *RedisStore) submit(ctx context.Context, r *enqReq) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	r.done = make(chan struct{})
	s.enq.add(r)
	select {
	case <-r.done:
	case <-ctx.Done():
		return false, ctx.Err() // the task may or may not be enqueued
	}
	if r.err != nil {
		return false, r.err
	}
	if r.dup == r.t.ID {
		return false, &DuplicateError{ID: r.dup}
	}
	if r.dup != "" {
		return false, &DuplicateError{Key: r.t.UniqueKey, ID: r.dup}
	}
	if r.periodic == "" || r.enqueued {
		r.t.EnqueuedAt = time.Now()
		r.t.State = Pending
		if r.t.RunAt.After(r.t.EnqueuedAt) {
			r.t.State = Scheduled
		}
	}
	return r.enqueued || r.periodic == "", nil
}

const maxBatch = 256

func (s *RedisStore) flushEnqueue(batch []*enqReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var calls []*call
	var reqs [][]*enqReq
	open := make(map[string]int)
	var newQueues []string
	for _, r := range batch {
		q := r.t.Queue
		if seen, _ := s.known.Load(q); seen != true && !slices.Contains(newQueues, q) {
			newQueues = append(newQueues, q)
		}
		if r.periodic != "" {
			args := taskArgs([]any{r.periodic, r.tick}, r.t)
			calls = append(calls, &call{script: periodicScript, keys: []string{s.base(q)}, args: args})
			reqs = append(reqs, []*enqReq{r})
			continue
		}
		i, ok := open[q]
		if !ok || len(reqs[i]) >= maxBatch {
			i = len(calls)
			open[q] = i
			calls = append(calls, &call{script: enqueueScript, keys: []string{s.base(q)}})
			reqs = append(reqs, nil)
		}
		reqs[i] = append(reqs[i], r)
	}
	for i, c := range calls {
		if c.script == enqueueScript {
			c.args, reqs[i] = s.enqueueArgs(reqs[i])
		}
	}
	if len(newQueues) > 0 {
		members := make([]any, len(newQueues))
		for i, q := range newQueues {
			members[i] = q
		}
		if err := s.client.SAdd(ctx, s.queuesKey(), members...).Err(); err == nil {
			for _, q := range newQueues {
				s.known.Store(q, true)
			}
		}
	}
	s.runCalls(ctx, calls)
	for i, c := range calls {
		res, err := c.cmd.Result()
		if err == nil && c.script == enqueueScript {
			err = setHolders(reqs[i], res)
		}
		for _, r := range reqs[i] {
			switch {
			case err != nil:
				r.err = fmt.Errorf("tasks: enqueue: %w", err)
			case r.periodic != "":
				switch v := res.(type) {
				case int64:
					r.enqueued = v == 1
				case string:
					r.dup = v
				}
			}
			close(r.done)
		}
	}
}

// enqueueArgs returns the arguments of an enqueue script call of reqs,
// and reqs in the call's order: its plain tasks (due now, no unique key)
// first, as id, definition pairs, then the others with all their fields.
func (s *RedisStore) enqueueArgs(reqs []*enqReq) ([]any, []*enqReq) {
	now := time.Now()
	rs := make([]*enqReq, 0, len(reqs))
	for _, r := range reqs {
		if r.t.UniqueKey == "" && !r.t.RunAt.After(now) {
			rs = append(rs, r)
		}
	}
	n := len(rs)
	for _, r := range reqs {
		if r.t.UniqueKey != "" || r.t.RunAt.After(now) {
			rs = append(rs, r)
		}
	}
	args := make([]any, 0, 2+2*n+enqueueFields*(len(rs)-n))
	args = append(args, s.nonce(), n)
	for _, r := range rs[:n] {
		args = append(args, r.t.ID, packDef(r.t))
	}
	for _, r := range rs[n:] {
		args = taskArgs(args, r.t)
	}
	return args, rs
}

// setHolders reads an enqueue script's reply: {position, holder} pairs
// of the tasks not enqueued, positions from 1 as integers (or strings,
// from a retried call).
func setHolders(reqs []*enqReq, res any) error {
	l, ok := res.([]any)
	if !ok {
		return fmt.Errorf("unexpected reply %T", res)
	}
	for k := 0; k+1 < len(l); k += 2 {
		var j int64
		switch v := l[k].(type) {
		case int64:
			j = v
		case string:
			j, _ = strconv.ParseInt(v, 10, 64)
		}
		if j < 1 || j > int64(len(reqs)) {
			return fmt.Errorf("unexpected reply position %v", l[k])
		}
		reqs[j-1].dup, _ = l[k+1].(string)
	}
	return nil
}

// Claim implements [Store]. It takes the queues in order, one script call
// (one round trip) per queue until max tasks are leased.
func (s *RedisStore) Claim(ctx context.Context, worker string, queues []string, max int, ttl time.Duration) ([]*Lease, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.wait.claimStarted()
	var out []*Lease
	var next time.Time
	for _, q := range queues {
		if _, ok := s.known.Load(q); !ok {
			s.known.Store(q, false)
		}
		res, err := s.run(ctx, claimScript, q, worker, max-len(out), ttl.Milliseconds(), s.nonce()).Slice()
		if err != nil {
			return out, fmt.Errorf("tasks: claim from %q: %w", q, err)
		}
		if len(res) < 3 {
			return out, fmt.Errorf("tasks: claim: unexpected reply")
		}
		now, _ := res[0].(int64)
		s.skew.Store(now - time.Now().UnixMilli())
		if nd, _ := res[1].(int64); nd >= 0 {
			at := s.local(nd)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		started := time.UnixMilli(now)
		token, _ := res[2].(int64)
		for i := 3; i+1 < len(res); i += 2 {
			stored, _ := res[i].(string)
			attempt, _ := res[i+1].(string)
			t := &Task{Queue: q}
			unpackStored(t, stored)
			n, _ := strconv.Atoi(attempt)
			out = append(out, &Lease{Task: t, Attempt: n, StartedAt: started, Token: token, Worker: worker})
		}
		if len(out) >= max {
			break
		}
	}
	s.wait.setNext(next)
	return out, nil
}

// local converts a Redis-clock time in ms to a local time.
func (s *RedisStore) local(ms int64) time.Time { return time.UnixMilli(ms - s.skew.Load()) }

// Renew implements [Store].
func (s *RedisStore) Renew(ctx context.Context, leases []*Lease, ttl time.Duration) (lost, cancel []string, err error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	byQueue := make(map[string]*call)
	var calls []*call
	for _, l := range leases {
		c := byQueue[l.Task.Queue]
		if c == nil {
			c = &call{script: renewScript, keys: []string{s.base(l.Task.Queue)}, args: []any{l.Worker, ttl.Milliseconds()}}
			byQueue[l.Task.Queue] = c
			calls = append(calls, c)
		}
		c.args = append(c.args, l.Task.ID, fence(l))
	}
	s.runCalls(ctx, calls)
	for _, c := range calls {
		res, err := c.cmd.Slice()
		if err != nil {
			return nil, nil, fmt.Errorf("tasks: renew: %w", err)
		}
		if len(res) == 2 {
			lost = appendStrings(lost, res[0])
			cancel = appendStrings(cancel, res[1])
		}
	}
	return lost, cancel, nil
}

func appendStrings(dst []string, v any) []string {
	l, _ := v.([]any)
	for _, x := range l {
		if s, ok := x.(string); ok {
			dst = append(dst, s)
		}
	}
	return dst
}

type finReq struct {
	l    *Lease
	o    Outcome
	lost bool
	err  error
	done chan struct{}
}

// Finish implements [Store].
func (s *RedisStore) Finish(ctx context.Context, l *Lease, o Outcome) error {
	if s.closed.Load() {
		return ErrClosed
	}
	switch o.State {
	case Pending, Retry, Succeeded, Dead, Cancelled:
	default:
		return fmt.Errorf("%w: outcome state %q", ErrInvalid, o.State)
	}
	r := &finReq{l: l, o: o, done: make(chan struct{})}
	s.fin.add(r)
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.lost {
		return ErrLeaseLost
	}
	return r.err
}

func (s *RedisStore) flushFinish(batch []*finReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var calls []*call
	var reqs [][]*finReq
	open := make(map[string]int)
	for _, r := range batch {
		q := r.l.Task.Queue
		i, ok := open[q]
		if !ok || len(reqs[i]) >= maxBatch {
			i = len(calls)
			open[q] = i
			calls = append(calls, &call{script: finishScript, keys: []string{s.base(q)}, args: []any{s.retMS(), s.keep}})
			reqs = append(reqs, nil)
		}
		delay := int64(0)
		if r.o.State == Retry {
			delay = max(time.Until(r.o.RunAt).Milliseconds(), 0)
		}
		calls[i].args = append(calls[i].args, r.l.Task.ID, fence(r.l), string(r.o.State), delay, r.o.Error)
		reqs[i] = append(reqs[i], r)
	}
	s.runCalls(ctx, calls)
	for i, c := range calls {
		res, err := c.cmd.Slice()
		for _, p := range res {
			if j, ok := p.(int64); ok && j >= 1 && int(j) <= len(reqs[i]) {
				reqs[i][j-1].lost = true
			}
		}
		for _, r := range reqs[i] {
			if err != nil {
				r.err = fmt.Errorf("tasks: finish: %w", err)
			}
			close(r.done)
		}
	}
}

// Progress implements [Store].
func (s *RedisStore) Progress(ctx context.Context, l *Lease, data []byte) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	n, err := s.run(ctx, progressScript, l.Task.Queue, l.Task.ID, fence(l), data).Int64()
	if err != nil {
		return fmt.Errorf("tasks: progress: %w", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// queues returns the names of every queue the store has seen: those
// registered in Redis, and those this process enqueued to or claimed
// from. It registers the latter again when Redis lost them (a restart
// without persistence, a failover to a replica that lagged), so that
// every node's maintenance and inspection see them again.
func (s *RedisStore) queues(ctx context.Context) ([]string, error) {
	qs, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("tasks: listing queues: %w", err)
	}
	have := make(map[string]bool, len(qs))
	for _, q := range qs {
		have[q] = true
	}
	var missing, lost []any
	s.known.Range(func(k, v any) bool {
		q, seen := k.(string), v.(bool)
		switch {
		case !have[q]:
			missing = append(missing, q)
			qs = append(qs, q)
			if seen {
				lost = append(lost, q)
			}
		case !seen:
			s.known.Store(q, true)
		}
		return true
	})
	if len(missing) > 0 {
		if err := s.client.SAdd(ctx, s.queuesKey(), missing...).Err(); err != nil {
			return nil, fmt.Errorf("tasks: registering queues: %w", err)
		}
		for _, q := range missing {
			s.known.Store(q, true)
		}
		if len(lost) > 0 {
			s.log.Warn("tasks: queues Redis lost were registered again", "queues", lost)
		}
	}
	return qs, nil
}

// Maintain implements [Store]: one script per queue hands back expired
// leases and drops final tasks past retention; every ReconcileEvery, it
// also scans a slice of each queue's task hashes and repairs them. Each
// pass reads the queues from Redis and registers again those this
// process uses that Redis lost.
func (s *RedisStore) Maintain(ctx context.Context) ([]*Task, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.maintain.Lock()
	defer s.maintain.Unlock()
	qs, err := s.queues(ctx)
	if err != nil {
		return nil, err
	}
	calls := make([]*call, len(qs))
	for i, q := range qs {
		calls[i] = &call{script: maintainScript, keys: []string{s.base(q)}, args: []any{s.retMS(), s.keep, errLeaseExpired}}
	}
	s.runCalls(ctx, calls)
	var back []*Task
	for i, c := range calls {
		res, err := c.cmd.Result()
		if err != nil {
			return back, fmt.Errorf("tasks: maintenance: %w", err)
		}
		back = append(back, parseViews(res, qs[i])...)
	}
	if time.Since(s.lastRec) >= s.reconcile {
		s.lastRec = time.Now()
		for _, q := range qs {
			if err := s.reconcileQueue(ctx, q); err != nil {
				return back, err
			}
		}
	}
	return back, nil
}

// reconcileQueue repairs the next slice of a queue's tasks.
func (s *RedisStore) reconcileQueue(ctx context.Context, q string) error {
	kv, cursor, err := s.client.HScan(ctx, s.base(q)+"f:st", s.cursors[q], "", 500).Result()
	if err != nil {
		return fmt.Errorf("tasks: reconcile: %w", err)
	}
	s.cursors[q] = cursor
	if len(kv) == 0 {
		return nil
	}
	args := make([]any, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		args = append(args, kv[i])
	}
	n, err := s.run(ctx, reconcileScript, q, args...).Int64()
	if err != nil {
		return fmt.Errorf("tasks: reconcile: %w", err)
	}
	if n > 0 {
		s.log.Warn("tasks: reconciler repaired tasks left inconsistent", "queue", q, "repaired", n)
	}
	return nil
}

// Close implements [Store]: it stops the pub/sub reader, waits for
// batches in flight, and makes later calls return [ErrClosed].
func (s *RedisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.wait.close()
	s.wg.Wait()
	return nil
}
