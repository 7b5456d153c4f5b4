package inspect

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
)

const (
	liveTopic = "inspect"
	// settle is how long the live stream gathers changes before it sends
	// fresh counts: one Counts call and one event per settle, whatever the
	// rate of task events.
	settle = 250 * time.Millisecond
	// rateMinutes is the span of the processed/failed chart.
	rateMinutes = 60
	// keepEvents bounds the task events the inspector remembers for task
	// pages.
	keepEvents = 2000
)

// live follows the runner's events: it counts outcomes per minute, keeps
// the latest events for the task pages, and publishes fresh counts on the
// inspector's SSE broker a moment after anything changes.
type live struct {
	in *Inspector

	mu      sync.Mutex
	sub     *rtkit.Subscription
	closed  bool
	retryAt time.Time
	timer   *time.Timer // pending flush, or nil
	flushes sync.WaitGroup
	minutes [rateMinutes]minute // ring by unix minute
	recent  []tasks.Event       // ring of the latest events
	next    int
}

type minute struct {
	at                int64 // unix minute
	processed, failed int
}

func newLive(in *Inspector) *live { return &live{in: in} }

// start subscribes to the runner's events once (again after a failure,
// at most every 5s).
func (l *live) start() {
	l.mu.Lock()
	if l.sub != nil || l.closed || time.Now().Before(l.retryAt) {
		l.mu.Unlock()
		return
	}
	l.retryAt = time.Now().Add(5 * time.Second)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := l.in.r.Subscribe(ctx, l.event)
	if err != nil {
		l.in.log.Warn("inspect: subscribing to task events failed; pages won't update live", "err", err)
		return
	}
	l.mu.Lock()
	if l.sub != nil || l.closed {
		l.mu.Unlock()
		sub.Close()
		return
	}
	l.sub = sub
	l.mu.Unlock()
}

// event records e; it runs on the backplane's delivery path.
func (l *live) event(e tasks.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := e.Time.Unix() / 60
	slot := &l.minutes[m%rateMinutes]
	if slot.at != m {
		*slot = minute{at: m}
	}
	switch e.Kind {
	case tasks.EventSucceeded:
		slot.processed++
	case tasks.EventRetrying, tasks.EventFailed, tasks.EventDead:
		slot.processed++
		slot.failed++
	}
	if len(l.recent) < keepEvents {
		l.recent = append(l.recent, e)
	} else {
		l.recent[l.next] = e
		l.next = (l.next + 1) % keepEvents
	}
	l.kickLocked()
}

// kick schedules a flush of fresh counts to the live stream.
func (l *live) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kickLocked()
}

func (l *live) kickLocked() {
	if l.timer != nil || l.closed {
		return
	}
	l.flushes.Add(1)
	l.timer = time.AfterFunc(settle, l.flush)
}

func (l *live) flush() {
	defer l.flushes.Done()
	l.mu.Lock()
	l.timer = nil
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := l.in.snapshot(ctx)
	if err != nil {
		l.in.log.Warn("inspect: reading counts failed", "err", err)
		return
	}
	data, _ := json.Marshal(snap)
	if _, err := l.in.broker.Publish(ctx, liveTopic, sse.Event{Type: "counts", Data: data}); err != nil {
		l.in.log.Warn("inspect: publishing counts failed", "err", err)
	}
}

// rates returns the processed and failed counts of the last rateMinutes
// minutes, oldest first, and the unix time of each minute.
func (l *live) rates(now time.Time) (at []int64, processed, failed []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := now.Unix() / 60
	for m := cur - rateMinutes + 1; m <= cur; m++ {
		s := l.minutes[m%rateMinutes]
		at = append(at, m*60)
		if s.at == m {
			processed, failed = append(processed, s.processed), append(failed, s.failed)
		} else {
			processed, failed = append(processed, 0), append(failed, 0)
		}
	}
	return at, processed, failed
}

// eventsOf returns the remembered events of a task, oldest first.
func (l *live) eventsOf(id string) []tasks.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []tasks.Event
	n := len(l.recent)
	for i := range n {
		e := l.recent[(l.next+i)%n]
		if e.TaskID == id {
			out = append(out, e)
		}
	}
	return out
}

// close ends the subscription and waits for a flush under way.
func (l *live) close() {
	l.mu.Lock()
	l.closed = true
	sub := l.sub
	l.sub = nil
	if l.timer != nil && l.timer.Stop() {
		l.timer = nil
		l.flushes.Done()
	}
	l.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
	l.flushes.Wait()
}

// events streams the live updates: "counts" events whose data is a
// [snapshot] in JSON.
func (in *Inspector) events(w http.ResponseWriter, r *http.Request) {
	in.live.kick()
	in.broker.ServeHTTP(w, r)
}
