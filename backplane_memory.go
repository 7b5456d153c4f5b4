package rtkit

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configure a [MemoryBackplane]. The zero value is ready to
// use.
type MemoryOptions struct {
	// HistorySize is how many messages each topic keeps for recovery.
	// Default 1000 ([DefaultHistorySize]); negative keeps none.
	HistorySize int
	// HistoryTTL is how long a message stays in history. Default one hour
	// ([DefaultHistoryTTL]); negative means no age bound. Old messages are
	// trimmed when the topic is next published to; the history of a topic
	// that has been idle for its TTL is dropped as a whole (by a sweep that
	// runs every HistoryTTL/2, at most every minute).
	HistoryTTL time.Duration
	// TopicHistory, if set, returns the history size and TTL of a topic,
	// overriding HistorySize and HistoryTTL (same meaning of zero and
	// negative values). It may be called often, from any goroutine: keep
	// it cheap and give the same answer for the same topic.
	TopicHistory func(topic string) (size int, ttl time.Duration)
	// MaxMessageSize is the largest data Publish accepts, in bytes.
	// Default 1 MiB ([DefaultMaxMessageSize]).
	MaxMessageSize int
}

// MemoryBackplane is the in-process [Backplane]: a ring buffer of history
// per topic and direct fan-out to local subscribers. It reaches only the
// subscribers of its own process.
//
// Publish delivers synchronously: it calls the handlers of the topic's
// subscribers before it returns. Topics live in sharded maps, so
// publishers to different topics rarely contend.
//
// NewMemoryBackplane starts no goroutine; a timer (not a goroutine while
// it waits) drops idle topics, and Close stops it.
type MemoryBackplane struct {
	cfg    limitsConfig
	seed   maphash.Seed
	shards [64]memShard

	closed   atomic.Bool
	mu       sync.Mutex // guards janitor and topic creation against Close
	janitor  *time.Timer
	sweeping sync.WaitGroup // a sweep in progress; Close waits for it
}

var _ Backplane = (*MemoryBackplane)(nil)

type memShard struct {
	mu     sync.RWMutex
	topics map[string]*memTopic
}

type memTopic struct {
	name   string
	limits historyLimits
	subs   subSet

	mu       sync.Mutex // orders publishes and deliveries
	dead     bool       // dropped from the map by sweep; look the topic up again
	last     ID
	lastTime time.Time
	hist     []*Message // oldest first; hist[head:] is live
	head     int
	trimmed  bool // a message was ever dropped from history
}

// NewMemoryBackplane returns a MemoryBackplane configured by opts.
func NewMemoryBackplane(opts MemoryOptions) *MemoryBackplane {
	b := &MemoryBackplane{
		cfg:  newLimitsConfig(opts.HistorySize, opts.HistoryTTL, opts.MaxMessageSize, opts.TopicHistory),
		seed: maphash.MakeSeed(),
	}
	for i := range b.shards {
		b.shards[i].topics = make(map[string]*memTopic)
	}
	return b
}

func (b *MemoryBackplane) shard(topic string) *memShard {
	return &b.shards[maphash.String(b.seed, topic)%uint64(len(b.shards))]
}

// lockTopic returns the topic's state, created if need be, with its
// lock held.
func (b *MemoryBackplane) lockTopic(name string) (*memTopic, error) {
	for {
		t, err := b.topic(name, true)
		if err != nil {
			return nil, err
		}
		t.mu.Lock()
		if !t.dead {
			return t, nil
		}
		t.mu.Unlock()
	}
}

// topic returns the topic's state, creating it if create is set.
func (b *MemoryBackplane) topic(name string, create bool) (*memTopic, error) {
	sh := b.shard(name)
	sh.mu.RLock()
	t := sh.topics[name]
	sh.mu.RUnlock()
	if t != nil || !create {
		return t, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t = sh.topics[name]; t == nil {
		t = &memTopic{name: name, limits: b.cfg.limits(name)}
		sh.topics[name] = t
	}
	if b.janitor == nil {
		b.janitor = time.AfterFunc(b.sweepEvery(), b.sweep)
	}
	return t, nil
}

// Publish implements [Backplane.Publish]. It delivers to local subscribers
// before it returns.
func (b *MemoryBackplane) Publish(ctx context.Context, topic string, data []byte, opts PublishOptions) (ID, error) {
	if err := b.cfg.checkPublish(topic, data); err != nil {
		return ID{}, err
	}
	if err := ctx.Err(); err != nil {
		return ID{}, err
	}
	m := &Message{Topic: topic, Data: append(make([]byte, 0, len(data)), data...)}
	t, err := b.lockTopic(topic)
	if err != nil {
		return ID{}, err
	}
	defer t.mu.Unlock()
	if b.closed.Load() {
		return ID{}, ErrClosed
	}
	now := time.Now()
	m.Time = now.Truncate(time.Millisecond)
	if !opts.Ephemeral {
		ms := max(uint64(now.UnixMilli()), t.last.MS)
		id := ID{MS: ms}
		if ms == t.last.MS {
			id = t.last.next()
		}
		m.ID, m.Time = id, time.UnixMilli(int64(id.MS))
		t.last, t.lastTime = id, now
		t.append(m, now)
	}
	t.subs.dispatch(m)
	return m.ID, nil
}

// append adds m to history and trims it by count and age.
func (t *memTopic) append(m *Message, now time.Time) {
	if t.limits.size == 0 {
		t.trimmed = true
		return
	}
	t.hist = append(t.hist, m)
	if n := len(t.hist) - t.head; n > t.limits.size {
		t.hist[t.head] = nil
		t.head++
		t.trimmed = true
	}
	if t.limits.ttl > 0 {
		minMS := uint64(now.Add(-t.limits.ttl).UnixMilli())
		for len(t.hist)-t.head > 1 && t.hist[t.head].ID.MS < minMS {
			t.hist[t.head] = nil
			t.head++
			t.trimmed = true
		}
	}
	if t.head > 64 && t.head > len(t.hist)/2 {
		t.hist = slices.Clone(t.hist[t.head:])
		t.head = 0
	}
}

// history returns retained messages after since, and whether since was
// retained (so that none after it is missing).
func (t *memTopic) history(since ID, limit int) (msgs []*Message, complete bool) {
	live := t.hist[t.head:]
	i, found := slices.BinarySearchFunc(live, since, func(m *Message, id ID) int { return m.ID.Compare(id) })
	complete = since.IsZero() || found
	if found {
		i++
	}
	out := live[i:]
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return slices.Clone(out), complete
}

// Subscribe implements [Backplane.Subscribe]. History is delivered to h
// before Subscribe returns.
func (b *MemoryBackplane) Subscribe(ctx context.Context, topic string, opts SubscribeOptions, h Handler) (*Subscription, error) {
	if err := CheckTopic(topic); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := b.lockTopic(topic)
	if err != nil {
		return nil, err
	}
	if b.closed.Load() {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	s := newSubscriber(h, true)
	var hist []*Message
	complete := true
	switch {
	case !opts.Since.IsZero():
		hist, complete = t.history(opts.Since, 0)
	case opts.FromStart:
		hist, _ = t.history(ID{}, 0)
		complete = !t.trimmed
	}
	hist, all := capReplay(hist, opts.MaxReplay)
	complete = complete && all
	pos := s.finish(opts.Since, hist, t.last)
	t.subs.add(s)
	t.mu.Unlock()
	return newSubscription(topic, complete, pos, func() {
		s.closed.Store(true)
		t.subs.remove(s)
	}), nil
}

// History implements [Backplane.History].
func (b *MemoryBackplane) History(ctx context.Context, topic string, opts HistoryOptions) (History, error) {
	if err := CheckTopic(topic); err != nil {
		return History{}, err
	}
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	if b.closed.Load() {
		return History{}, ErrClosed
	}
	t, _ := b.topic(topic, false)
	if t == nil {
		return History{Complete: opts.Since.IsZero()}, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	msgs, complete := t.history(opts.Since, opts.Limit)
	return History{Messages: msgs, Position: t.last, Complete: complete}, nil
}

// Close implements [Backplane.Close]. Subscriptions end at once.
func (b *MemoryBackplane) Close() error {
	defer b.sweeping.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	if b.janitor != nil {
		b.janitor.Stop()
	}
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for _, t := range sh.topics {
			for _, s := range t.subs.load() {
				s.closed.Store(true)
			}
		}
		clear(sh.topics)
		sh.mu.Unlock()
	}
	return nil
}

// sweepEvery is how often idle topics are looked for.
func (b *MemoryBackplane) sweepEvery() time.Duration {
	d := time.Minute
	if b.cfg.ttl > 0 && b.cfg.ttl/2 < d {
		d = max(b.cfg.ttl/2, 100*time.Millisecond)
	}
	return d
}

// sweep drops the history of topics idle for their TTL, and topics with
// neither subscribers nor history. It re-arms itself while topics remain.
func (b *MemoryBackplane) sweep() {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return
	}
	b.sweeping.Add(1)
	b.mu.Unlock()
	defer b.sweeping.Done()
	now := time.Now()
	remaining := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for name, t := range sh.topics {
			t.mu.Lock()
			idle := now.Sub(t.lastTime)
			if t.limits.ttl > 0 && idle >= t.limits.ttl && len(t.hist) > t.head {
				t.hist, t.head, t.trimmed = nil, 0, true
			}
			if t.subs.len() == 0 && len(t.hist) == t.head && idle >= time.Minute {
				t.dead = true
				delete(sh.topics, name)
			}
			t.mu.Unlock()
		}
		remaining += len(sh.topics)
		sh.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed.Load():
	case remaining > 0:
		b.janitor.Reset(b.sweepEvery())
	default:
		b.janitor = nil
	}
}
