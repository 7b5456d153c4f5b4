package tasks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
)

// benchThroughput enqueues b.N no-op tasks from 8 goroutines while a
// runner with concurrency 50 processes them, and reports tasks/s from the
// first enqueue to the last completion.
func benchThroughput(b *testing.B, store Store) {
	r := NewRunner(Options{Store: store, Concurrency: 50, Logger: quiet})
	var done atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	Handle(r, "noop", func(ctx context.Context, j *Job[struct{}]) error {
		if done.Add(1) == n {
			close(all)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	payload := struct{}{}
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= n {
				if _, err := r.Enqueue(ctx, "noop", payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
}

// memoryRetention are the memory store's retention settings the
// benchmarks run with: the default (the last 10,000 final tasks of a
// queue and state are kept, each finish trims the oldest) and none (a
// finished task is dropped at once).
var memoryRetention = []struct {
	name string
	opts MemoryOptions
}{
	{"retention=default", MemoryOptions{}},
	{"retention=none", MemoryOptions{Retention: -1}},
}

// BenchmarkMemoryThroughput is the memory store's end-to-end rate:
// enqueue, claim, run a no-op handler, finish.
func BenchmarkMemoryThroughput(b *testing.B) {
	for _, rc := range memoryRetention {
		b.Run(rc.name, func(b *testing.B) { benchThroughput(b, NewMemoryStore(rc.opts)) })
	}
}

// BenchmarkRedisThroughput is the same over the Redis store.
func BenchmarkRedisThroughput(b *testing.B) {
	db := redistest.New(b)
	s, err := NewRedisStore(RedisOptions{Client: db.Client(b), Prefix: fmt.Sprintf("%sbench:", db.Prefix), Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchThroughput(b, s)
}

// BenchmarkEnqueue measures Enqueue alone on the memory store.
func BenchmarkEnqueue(b *testing.B) {
	r := NewRunner(Options{Logger: quiet})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Enqueue(ctx, "noop", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemoryProcess is the memory store's processing rate: b.N no-op
// tasks are enqueued first (not timed), then a runner with concurrency 50
// runs them all.
func BenchmarkMemoryProcess(b *testing.B) {
	for _, rc := range memoryRetention {
		b.Run(rc.name, func(b *testing.B) { benchProcess(b, NewMemoryStore(rc.opts)) })
	}
}

func benchProcess(b *testing.B, store Store) {
	r := NewRunner(Options{Store: store, Concurrency: 50, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	for range b.N {
		if _, err := r.Enqueue(ctx, "noop", nil); err != nil {
			b.Fatal(err)
		}
	}
	var done atomic.Int64
	all := make(chan struct{})
	Handle(r, "noop", func(ctx context.Context, j *Job[struct{}]) error {
		if done.Add(1) == int64(b.N) {
			close(all)
		}
		return nil
	})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	<-all
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
	b.StopTimer()
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
}
