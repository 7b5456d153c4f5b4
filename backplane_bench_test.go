package rtkit

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
)

// counter is a Handler that only counts, so benchmarks measure the
// backplane.
type counter struct{ n atomic.Int64 }

func (c *counter) HandleMessage(*Message) { c.n.Add(1) }
func (c *counter) HandleGap(ID)           {}

// waitCount waits until c has counted n messages.
func (c *counter) waitCount(b *testing.B, n int64) {
	deadline := time.Now().Add(30 * time.Second)
	for c.n.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d messages", c.n.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

var benchPayload = []byte(`{"user":"ada","text":"hello, room"}`)

// BenchmarkMemoryPublish publishes to one topic with one local
// subscriber; msgs/s is the figure the foundation issue names.
func BenchmarkMemoryPublish(b *testing.B) {
	ctx := context.Background()
	bp := NewMemoryBackplane(MemoryOptions{})
	defer bp.Close()
	var c counter
	sub, err := bp.Subscribe(ctx, "bench", SubscribeOptions{}, &c)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := bp.Publish(ctx, "bench", benchPayload, PublishOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if c.n.Load() != int64(b.N) {
		b.Fatalf("delivered %d of %d", c.n.Load(), b.N)
	}
}

// BenchmarkMemoryPublishTopics publishes from all CPUs to 64 topics, each
// with one subscriber: contention between topics.
func BenchmarkMemoryPublishTopics(b *testing.B) {
	ctx := context.Background()
	bp := NewMemoryBackplane(MemoryOptions{})
	defer bp.Close()
	var c counter
	for i := range 64 {
		sub, err := bp.Subscribe(ctx, fmt.Sprintf("bench%d", i), SubscribeOptions{}, &c)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
	}
	var next atomic.Int64
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		topic := fmt.Sprintf("bench%d", next.Add(1)%64)
		for pb.Next() {
			if _, err := bp.Publish(ctx, topic, benchPayload, PublishOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRedisPublish measures publish throughput with 64 concurrent
// publishers on one topic (the figure scripts/bench-backplane.sh compares
// with redis-benchmark SET at -c 64), and that a subscriber on another
// node receives them all.
func BenchmarkRedisPublish(b *testing.B) {
	for _, publishers := range []int{1, 64} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			benchRedisPublish(b, publishers)
		})
	}
}

func benchRedisPublish(b *testing.B, publishers int) {
	ctx := context.Background()
	db := redistest.New(b)
	pub, err := NewRedisBackplane(RedisOptions{Client: db.Client(b), Prefix: db.Prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := NewRedisBackplane(RedisOptions{Client: db.Client(b), Prefix: db.Prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var c counter
	s, err := sub.Subscribe(ctx, "bench", SubscribeOptions{}, &c)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	b.SetParallelism(max(1, publishers/runtime.GOMAXPROCS(0)))
	if publishers == 1 {
		b.SetParallelism(1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if publishers == 1 {
		for i := 0; i < b.N; i++ {
			if _, err := pub.Publish(ctx, "bench", benchPayload, PublishOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := pub.Publish(ctx, "bench", benchPayload, PublishOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	c.waitCount(b, int64(b.N))
}

// BenchmarkMemorySubscribeChurn joins and leaves a topic that has 10,000
// subscribers, publishing once every 100 changes: the cost of a member
// coming and going in a large room.
func BenchmarkMemorySubscribeChurn(b *testing.B) {
	ctx := context.Background()
	bp := NewMemoryBackplane(MemoryOptions{})
	defer bp.Close()
	var c counter
	subs := make([]*Subscription, 10_000)
	for i := range subs {
		s, err := bp.Subscribe(ctx, "room", SubscribeOptions{}, &c)
		if err != nil {
			b.Fatal(err)
		}
		subs[i] = s
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		subs[i%len(subs)].Close()
		s, err := bp.Subscribe(ctx, "room", SubscribeOptions{}, &c)
		if err != nil {
			b.Fatal(err)
		}
		subs[i%len(subs)] = s
		if i%100 == 0 {
			if _, err := bp.Publish(ctx, "room", benchPayload, PublishOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
	for _, s := range subs {
		s.Close()
	}
}
