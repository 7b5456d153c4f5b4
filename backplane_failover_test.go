package rtkit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Helpers shared by the failover tests (Cluster, Sentinel, resharding):
// publishers on several nodes, members on every node, and an account of
// what each member got.

// timedRecorder is a recorder that also keeps when each message arrived.
type timedRecorder struct {
	*recorder
	tmu   sync.Mutex
	times []time.Time
}

func newTimedRecorder() *timedRecorder { return &timedRecorder{recorder: newRecorder()} }

func (r *timedRecorder) HandleMessage(m *Message) {
	r.tmu.Lock()
	r.times = append(r.times, time.Now())
	r.tmu.Unlock()
	r.recorder.HandleMessage(m)
}

// firstAfter returns when the first message published after t (by its ID)
// arrived, or the zero time.
func (r *timedRecorder) firstAfter(t time.Time) time.Time {
	msgs := r.messages()
	r.tmu.Lock()
	defer r.tmu.Unlock()
	for i, m := range msgs {
		if int64(m.ID.MS) > t.UnixMilli() && i < len(r.times) {
			return r.times[i]
		}
	}
	return time.Time{}
}

// ackFlow publishes to one topic at a steady pace and keeps what Redis
// acknowledged, and when.
type ackFlow struct {
	topic string
	mu    sync.Mutex
	acked []ID
	at    []time.Time
	fails int
}

func (f *ackFlow) run(ctx context.Context, b Backplane, every time.Duration, done *sync.WaitGroup) {
	defer done.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id, err := b.Publish(pctx, f.topic, fmt.Appendf(nil, "%d", i), PublishOptions{})
		cancel()
		f.mu.Lock()
		if err == nil {
			f.acked = append(f.acked, id)
			f.at = append(f.at, time.Now())
		} else {
			f.fails++
		}
		f.mu.Unlock()
	}
}

// outage returns the longest time between two acknowledgements that
// straddle t, or zero if none was acknowledged after t.
func (f *ackFlow) outage(t time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := time.Time{}
	for _, at := range f.at {
		if at.After(t) {
			if prev.IsZero() {
				prev = t
			}
			return at.Sub(prev)
		}
		prev = at
	}
	return 0
}

func (f *ackFlow) ids() []ID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acked)
}

// deliveryReport counts, for one member, the acknowledged messages it got,
// those it missed with a gap reported, and fails the test for a duplicate,
// a reordering, or a message missed silently. stored holds the IDs the
// topic's stream holds at the end: an acknowledged message missing from it
// was lost by Redis itself (asynchronous replication: the old primary
// acknowledged it and died before its replica had it); such a message is
// counted apart, as nobody can deliver it.
type deliveryReport struct {
	delivered, gapped, lostByRedis, gaps int
}

func checkMember(t *testing.T, name string, rec *recorder, acked []ID, stored map[ID]bool) deliveryReport {
	t.Helper()
	msgs := rec.messages()
	got := make(map[ID]bool, len(msgs))
	for i, m := range msgs {
		if i > 0 {
			require.Equal(t, 1, m.ID.Compare(msgs[i-1].ID), "%s: duplicate or reordered delivery at %d", name, i)
		}
		got[m.ID] = true
	}
	rec.mu.Lock()
	gaps := slices.Clone(rec.gaps)
	rec.mu.Unlock()
	rep := deliveryReport{gaps: len(gaps)}
	for _, id := range acked {
		switch {
		case got[id]:
			rep.delivered++
		case !stored[id]:
			rep.lostByRedis++
		default:
			explained := slices.ContainsFunc(gaps, func(g ID) bool { return g.Compare(id) < 0 })
			require.True(t, explained, "%s: acknowledged message %v, still in the stream, was lost without a gap report", name, id)
			rep.gapped++
		}
	}
	return rep
}
