package tasks

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults of the per-task options.
const (
	DefaultQueue       = "default"
	DefaultMaxAttempts = 10
	DefaultTimeout     = 30 * time.Minute
)

// Backoff is a retry delay policy: the n-th retry (n ≥ 1) waits
// Initial·Factor^(n-1), at most Max, with up to ±Jitter of it chosen at
// random so that tasks failing together don't retry together. It is data,
// not a function, because the node that retries a task may not be the one
// that enqueued it. The zero value is [DefaultBackoff].
type Backoff struct {
	Initial time.Duration `json:"initial,omitempty"`
	Max     time.Duration `json:"max,omitempty"`
	Factor  float64       `json:"factor,omitempty"`
	Jitter  float64       `json:"jitter,omitempty"`
}

// DefaultBackoff starts at 1s and doubles up to 1h, with ±20% jitter.
var DefaultBackoff = Backoff{Initial: time.Second, Max: time.Hour, Factor: 2, Jitter: 0.2}

// Delay returns the delay before retry n (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	if b == (Backoff{}) {
		b = DefaultBackoff
	}
	if b.Factor < 1 {
		b.Factor = 1
	}
	d := float64(b.Initial) * math.Pow(b.Factor, float64(max(n-1, 0)))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		d += d * j * (2*rand.Float64() - 1)
	}
	if d > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return time.Duration(d)
}

// An EnqueueOption tunes one Enqueue call.
type EnqueueOption func(*Task) error

// Queue puts the task in the named queue (default "default"). Names are
// 1–100 bytes without control characters, spaces, '{' or '}'.
func Queue(name string) EnqueueOption {
	return func(t *Task) error {
		if err := checkName("queue", name); err != nil {
			return err
		}
		t.Queue = name
		return nil
	}
}

// Delay makes the task due d from now.
func Delay(d time.Duration) EnqueueOption {
	return func(t *Task) error {
		t.RunAt = time.Now().Add(d)
		return nil
	}
}

// RunAt makes the task due at the given time.
func RunAt(at time.Time) EnqueueOption {
	return func(t *Task) error {
		t.RunAt = at
		return nil
	}
}

// MaxAttempts sets how many attempts the task gets (default 10); 1 means
// no retry.
func MaxAttempts(n int) EnqueueOption {
	return func(t *Task) error {
		if n < 1 {
			return fmt.Errorf("%w: MaxAttempts(%d): must be at least 1", ErrInvalid, n)
		}
		t.MaxAttempts = n
		return nil
	}
}

// Timeout bounds one attempt (default 30m): the handler's context is
// cancelled when it runs out, and the attempt fails. If the handler goes
// on regardless for another [Options.LeaseTTL], the runner gives the
// attempt up as timed out, so the task is retried while the handler runs
// on, and the handler's late result is discarded.
func Timeout(d time.Duration) EnqueueOption {
	return func(t *Task) error {
		if d <= 0 {
			return fmt.Errorf("%w: Timeout(%v): must be positive", ErrInvalid, d)
		}
		t.Timeout = d
		return nil
	}
}

// WithBackoff sets the task's retry delay policy (default [DefaultBackoff]).
func WithBackoff(b Backoff) EnqueueOption {
	return func(t *Task) error {
		if b.Initial < 0 || b.Max < 0 || b.Jitter < 0 || b.Factor < 0 {
			return fmt.Errorf("%w: negative backoff field", ErrInvalid)
		}
		t.Backoff = b
		return nil
	}
}

// Unique refuses the task with a [*DuplicateError] while another task
// with the same key, in the same queue, is live (not yet succeeded, dead
// or cancelled) and enqueued less than ttl ago. The key is released when
// its task reaches a final state or after ttl, whichever comes first.
func Unique(key string, ttl time.Duration) EnqueueOption {
	return func(t *Task) error {
		if key == "" || len(key) > 200 {
			return fmt.Errorf("%w: unique key must be 1-200 bytes", ErrInvalid)
		}
		if ttl < time.Millisecond {
			return fmt.Errorf("%w: Unique(%q, %v): ttl must be at least 1ms", ErrInvalid, key, ttl)
		}
		t.UniqueKey, t.UniqueTTL = key, ttl
		return nil
	}
}

// ID gives the task the caller's ID instead of a generated UUIDv7, so
// that callers can make an enqueue idempotent across their own retries
// ("order-42-receipt" is enqueued once, however often the order's
// handler runs). While a task with the ID exists in the task's queue, in
// any state, until it is deleted or dropped after its retention, Enqueue enqueues nothing and returns a [*DuplicateError]
// whose Key is "" and whose ID is id (as asynq's TaskID does; use
// [Runner.Get] for the existing task). IDs are 1–200 bytes without
// control characters, spaces or any of {}[]*?\. Not allowed with
// [Runner.Periodic], whose every tick is a new task. Use an ID in one
// queue only: the [RedisStore] checks it within the task's queue (the
// [MemoryStore] across all).
func ID(id string) EnqueueOption {
	return func(t *Task) error {
		if id == "" || len(id) > 200 {
			return fmt.Errorf("%w: task ID must be 1-200 bytes", ErrInvalid)
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c == 0x7f || strings.IndexByte("{}[]*?\\", c) >= 0 {
				return fmt.Errorf("%w: task ID %q has a space, control character or one of {}[]*?\\", ErrInvalid, id)
			}
		}
		t.ID = id
		return nil
	}
}

// checkName validates a task type or queue name.
func checkName(what, s string) error {
	if s == "" || len(s) > 100 {
		return fmt.Errorf("%w: %s name must be 1-100 bytes", ErrInvalid, what)
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == '{' || c == '}' {
			return fmt.Errorf("%w: %s name %q has a space, control character or brace", ErrInvalid, what, s)
		}
	}
	return nil
}
