package tasks_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

// LogAttempts logs every attempt's end with slog: type, ID, attempt,
// duration and error.
func LogAttempts(logger *slog.Logger) tasks.Middleware {
	return func(next tasks.HandlerFunc) tasks.HandlerFunc {
		return func(ctx context.Context, at *tasks.Attempt) error {
			start := time.Now()
			err := next(ctx, at)
			logger.LogAttrs(ctx, slog.LevelInfo, "task attempt",
				slog.String("type", at.Type), slog.Int("attempt", at.Attempt),
				slog.Duration("took", time.Since(start)), slog.Any("err", err))
			return err
		}
	}
}

func ExampleMiddleware_slog() {
	// A handler that drops the time and the duration, so that the output
	// is stable.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "took" {
				return slog.Attr{}
			}
			return a
		},
	}))
	r := tasks.NewRunner(tasks.Options{Middleware: []tasks.Middleware{LogAttempts(logger)}})
	done := make(chan struct{})
	tasks.Handle(r, "greet", func(ctx context.Context, j *tasks.Job[string]) error {
		defer close(done)
		if j.Attempt == 1 {
			return tasks.SkipRetry(fmt.Errorf("no greeting for %s", j.Payload))
		}
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()
	if _, err := r.Enqueue(ctx, "greet", "ada"); err != nil {
		log.Fatal(err)
	}
	<-done
	stop()
	<-ran
	// Output: level=INFO msg="task attempt" type=greet attempt=1 err="tasks: skip retry: no greeting for ada"
}

// Histogram counts durations in buckets (upper bounds), as a metrics
// library's histogram would (prometheus.HistogramVec's Observe, say).
type Histogram struct {
	mu      sync.Mutex
	Bounds  []time.Duration
	Buckets map[string][]int // by task type; the last bucket is +Inf
}

func (h *Histogram) Observe(typ string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Buckets[typ] == nil {
		h.Buckets[typ] = make([]int, len(h.Bounds)+1)
	}
	i := 0
	for i < len(h.Bounds) && d > h.Bounds[i] {
		i++
	}
	h.Buckets[typ][i]++
}

// RunTime records the run time of every attempt in h.
func RunTime(h *Histogram) tasks.Middleware {
	return func(next tasks.HandlerFunc) tasks.HandlerFunc {
		return func(ctx context.Context, at *tasks.Attempt) error {
			start := time.Now()
			defer func() { h.Observe(at.Type, time.Since(start)) }()
			return next(ctx, at)
		}
	}
}

func ExampleMiddleware_histogram() {
	h := &Histogram{Bounds: []time.Duration{time.Second, time.Minute}, Buckets: map[string][]int{}}
	r := tasks.NewRunner(tasks.Options{Middleware: []tasks.Middleware{RunTime(h)}})
	var wg sync.WaitGroup
	wg.Add(3)
	tasks.Handle(r, "resize", func(ctx context.Context, j *tasks.Job[int]) error {
		defer wg.Done()
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()
	for i := range 3 {
		if _, err := r.Enqueue(ctx, "resize", i); err != nil {
			log.Fatal(err)
		}
	}
	wg.Wait()
	stop()
	<-ran // the deferred Observe of each attempt ran before Run returned
	fmt.Println("resize buckets (≤1s, ≤1m, more):", h.Buckets["resize"])
	// Output: resize buckets (≤1s, ≤1m, more): [3 0 0]
}
