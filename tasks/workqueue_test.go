package tasks

import (
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func leasesN(from, n int) []*Lease {
	out := make([]*Lease, n)
	for i := range out {
		out[i] = &Lease{Task: &Task{ID: strconv.Itoa(from + i)}}
	}
	return out
}

// A batch of long tasks fans out: every lease of a batch runs at once on
// its own worker, though a push wakes only one worker and each woken one
// wakes the next. A lost wake-up deadlocks the bubble, which synctest
// reports.
func TestWorkQueueFansOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		q := newWorkQueue(n)
		var wg sync.WaitGroup
		running := make(chan string, n)
		release := make(chan struct{})
		for range n {
			wg.Go(func() {
				for {
					c, ok := q.pop()
					if !ok {
						return
					}
					running <- c.lease.Task.ID
					<-release // a long task: this worker stays busy
				}
			})
		}
		synctest.Wait() // every worker idle
		q.push(leasesN(0, n/2), time.Now())
		q.push(leasesN(n/2, n/2), time.Now())
		seen := map[string]bool{}
		for range n {
			seen[<-running] = true
		}
		assert.Len(t, seen, n, "all %d leases run at the same time", n)
		close(release)
		q.close()
		wg.Wait()
	})
}

// Leases are delivered once each, in order, and close lets the workers
// take what is queued before they stop.
func TestWorkQueueDeliversOnceThenCloses(t *testing.T) {
	q := newWorkQueue(8)
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				c, ok := q.pop()
				if !ok {
					return
				}
				mu.Lock()
				got[c.lease.Task.ID]++
				mu.Unlock()
			}
		})
	}
	const batches, size = 500, 8
	for b := range batches {
		q.push(leasesN(b*size, size), time.Now())
	}
	q.close()
	wg.Wait()
	require.Len(t, got, batches*size)
	for id, n := range got {
		require.Equal(t, 1, n, id)
	}
	_, ok := q.pop()
	assert.False(t, ok)
}

// A queue that never quite empties keeps its array: push moves what is
// left to the front.
func TestWorkQueueStaysBounded(t *testing.T) {
	q := newWorkQueue(4)
	q.push(leasesN(0, 1), time.Now())
	for i := range 10_000 {
		q.push(leasesN(i, 3), time.Now())
		for range 3 {
			_, ok := q.pop()
			require.True(t, ok)
		}
	}
	assert.LessOrEqual(t, cap(q.items), 8)
	c, ok := q.pop()
	require.True(t, ok)
	assert.Equal(t, "10001", c.lease.Task.ID, "FIFO: the last lease of the last push remains")
}
