package tasks

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitBackstop bounds a Wait, in case a wake notification was lost (the
// pub/sub connection was being replaced).
const waitBackstop = 2 * time.Second

// waiter is the Redis store's Wait: one pub/sub connection for the wake
// channels of the queues waited on, shared by every Wait call.
type waiter struct {
	s *RedisStore

	mu       sync.Mutex
	ps       *redis.PubSub
	channels map[string]bool
	seq      uint64        // wake messages received
	claimSeq uint64        // seq when the latest Claim started
	next     time.Time     // earliest due time the latest Claim saw
	sig      chan struct{} // closed on the next wake message
	closed   bool
}

func (w *waiter) claimStarted() {
	w.mu.Lock()
	w.claimSeq = w.seq
	w.mu.Unlock()
}

func (w *waiter) setNext(t time.Time) {
	w.mu.Lock()
	w.next = t
	w.mu.Unlock()
}

// Wait implements [Store].
func (s *RedisStore) Wait(ctx context.Context, queues []string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	w := &s.wait
	sig, next, err := w.prepare(ctx, queues)
	if err != nil || sig == nil {
		return err
	}
	d := waitBackstop
	if !next.IsZero() {
		d = min(d, time.Until(next))
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sig:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// prepare subscribes to the queues' wake channels and returns the signal
// to wait on, or nil when a wake arrived since the latest Claim.
func (w *waiter) prepare(ctx context.Context, queues []string) (chan struct{}, time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, time.Time{}, ErrClosed
	}
	var add []string
	for _, q := range queues {
		ch := w.s.base(q) + "wake"
		if !w.channels[ch] {
			add = append(add, ch)
		}
	}
	if len(add) > 0 {
		if w.ps == nil {
			w.channels = make(map[string]bool)
			w.sig = make(chan struct{})
			w.ps = w.s.client.Subscribe(ctx, add...)
			ch := w.ps.Channel()
			w.s.wg.Add(1)
			go w.read(ch)
		} else if err := w.ps.Subscribe(ctx, add...); err != nil {
			return nil, time.Time{}, err
		}
		for _, ch := range add {
			w.channels[ch] = true
		}
		// Wakes published before the subscription took effect are lost:
		// have the caller claim once more.
		w.seq++
	}
	if w.seq != w.claimSeq {
		return nil, time.Time{}, nil
	}
	return w.sig, w.next, nil
}

// read counts wake messages until the pub/sub is closed.
func (w *waiter) read(ch <-chan *redis.Message) {
	defer w.s.wg.Done()
	for range ch {
		w.mu.Lock()
		w.seq++
		close(w.sig)
		w.sig = make(chan struct{})
		w.mu.Unlock()
	}
}

func (w *waiter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.ps != nil {
		_ = w.ps.Close()
	}
}
