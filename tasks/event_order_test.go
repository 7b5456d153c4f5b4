package tasks

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldEvents is a memory backplane that holds back the publish of every
// event of one kind, as a busy network or Redis holds back one message
// and not the next.
type heldEvents struct {
	rtkit.Backplane
	kind []byte
	hold time.Duration
}

func (b heldEvents) Publish(ctx context.Context, topic string, data []byte, opts rtkit.PublishOptions) (rtkit.ID, error) {
	if bytes.Contains(data, b.kind) {
		time.Sleep(b.hold)
	}
	return b.Backplane.Publish(ctx, topic, data, opts)
}

// A task's events arrive in order (Event's documentation): the "retrying"
// of a failed attempt comes before the "started" of the next one, even
// when the retry is due at once and another worker slot starts it while
// the failed attempt's event is still being published. Before, the runner
// stored the retry first and published its event after, so the next
// attempt's "started" could overtake it.
func TestRetryingComesBeforeTheNextAttempt(t *testing.T) {
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { bp.Close() })
	r := newRunner(t, NewMemoryStore(MemoryOptions{}), Options{
		Concurrency: 2,
		Backplane:   heldEvents{Backplane: bp, kind: []byte(`"kind":"retrying"`), hold: 200 * time.Millisecond},
	})
	rec := record(t, r)
	var attempts atomic.Int32
	Handle(r, "flaky", func(ctx context.Context, job *Job[struct{}]) error {
		if attempts.Add(1) < 3 {
			return RetryAfter(0, errors.New("not yet"))
		}
		return nil
	})
	task, err := r.Enqueue(context.Background(), "flaky", struct{}{})
	require.NoError(t, err)
	waitState(t, r, task.ID, Succeeded, 10*time.Second)
	eventually(t, 5*time.Second, func() bool { return len(rec.kinds(task.ID)) == 7 }, "every event of the task")
	assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventRetrying, EventStarted, EventRetrying,
		EventStarted, EventSucceeded}, rec.kinds(task.ID))
}
