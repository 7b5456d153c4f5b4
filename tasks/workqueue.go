package tasks

import (
	"sync"
	"time"
)

// workQueue hands claimed leases from the dispatcher to the workers.
//
// A channel would wake one parked worker per lease: with short tasks the
// goroutine switches cost more than the tasks. The queue instead wakes
// workers one at a time: a push wakes one idle worker, and any worker
// that takes a lease wakes the next only if leases remain and no other
// wake is under way. Short tasks so run back to back on the workers that
// are awake, while a batch of long tasks still fans out over as many
// workers as it has leases, one wake-up after the other.
type workQueue struct {
	mu     sync.Mutex
	cond   sync.Cond // signalled for one idle worker; broadcast on close
	items  []claimed // FIFO from head
	head   int
	idle   int  // workers waiting in pop
	waking bool // a worker was signalled and hasn't looked at the queue yet
	closed bool
}

func newWorkQueue(capacity int) *workQueue {
	q := &workQueue{items: make([]claimed, 0, capacity)}
	q.cond.L = &q.mu
	return q
}

// push queues the leases, claimed at at.
func (q *workQueue) push(leases []*Lease, at time.Time) {
	q.mu.Lock()
	if q.head > 0 { // keep the queue at the front of its array
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	for _, l := range leases {
		q.items = append(q.items, claimed{l, at})
	}
	q.wakeLocked()
	q.mu.Unlock()
}

// wakeLocked wakes an idle worker if leases wait and no wake-up is under
// way.
func (q *workQueue) wakeLocked() {
	if q.head < len(q.items) && q.idle > 0 && !q.waking {
		q.waking = true
		q.cond.Signal()
	}
}

// pop returns the next lease, waiting for one; it reports false once the
// queue is closed and empty.
func (q *workQueue) pop() (claimed, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) {
		if q.closed {
			return claimed{}, false
		}
		q.idle++
		q.cond.Wait()
		q.idle--
		q.waking = false
	}
	c := q.items[q.head]
	q.items[q.head] = claimed{}
	if q.head++; q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.wakeLocked()
	return c, true
}

// close makes pop return false once the queued leases are taken.
func (q *workQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
