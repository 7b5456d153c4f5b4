package tasks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
)

// BenchmarkEnqueueOneGoroutine compares, from one goroutine, Enqueue one
// task at a time ("one") with EnqueueMany batches of 100 ("many"), on the
// memory and Redis stores; both report tasks/s. Every 20,000 tasks the
// runner gets a new store (not timed), so that both variants measure a
// store of the same size rather than the garbage collector's scan of
// millions of stored tasks. On a shared machine, whose load moves
// tasks/s between runs, cpu-ns/task (the process's CPU time, the garbage
// collector's included, over the tasks) is the steadier figure.
func BenchmarkEnqueueOneGoroutine(b *testing.B) {
	stores := map[string]func(b *testing.B) Store{
		"memory": func(b *testing.B) Store { return NewMemoryStore(MemoryOptions{}) },
		"redis": func(b *testing.B) Store {
			db := redistest.New(b)
			s, err := NewRedisStore(RedisOptions{Client: db.Client(b), Prefix: db.Prefix})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
	for _, name := range []string{"memory", "redis"} {
		payload := map[string]string{"to": "ada@example.com", "subject": "welcome"}
		b.Run(name+"/one", func(b *testing.B) {
			r := NewRunner(Options{Store: stores[name](b), Logger: quiet})
			ctx := context.Background()
			b.ReportAllocs()
			cpu := processCPU()
			n := 0
			for b.Loop() {
				if n++; n%20000 == 0 {
					b.StopTimer()
					r = NewRunner(Options{Store: stores[name](b), Logger: quiet})
					b.StartTimer()
				}
				if _, err := r.Enqueue(ctx, "mail", payload); err != nil {
					b.Fatal(err)
				}
			}
			reportRates(b, b.N, cpu)
		})
		for _, size := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/many%d", name, size), func(b *testing.B) {
				r := NewRunner(Options{Store: stores[name](b), Logger: quiet})
				ctx := context.Background()
				batch := make([]NewTask, size)
				for i := range batch {
					batch[i] = NewTask{Type: "mail", Payload: payload}
				}
				b.ReportAllocs()
				cpu := processCPU()
				n := 0
				for b.Loop() {
					if n%20000 == 0 && n > 0 {
						b.StopTimer()
						r = NewRunner(Options{Store: stores[name](b), Logger: quiet})
						b.StartTimer()
					}
					if _, err := r.EnqueueMany(ctx, batch); err != nil {
						b.Fatal(err)
					}
					n += size
				}
				reportRates(b, n, cpu)
			})
		}
	}
}

// reportRates reports n tasks' rate and CPU time a task since cpu.
func reportRates(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tasks/s")
	if used := processCPU() - cpu; cpu > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/task")
	}
}
