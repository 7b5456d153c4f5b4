package tasks

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtkit/rtkit/internal/redistest"
)

// redisMainCPU is the Redis main thread's CPU time.
func redisMainCPU(tb testing.TB, c redis.UniversalClient) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// BenchmarkRedisScripts runs the store's three hot scripts directly, a
// batch of 50 tasks each: enqueue, claim, finish (succeeded). It reports
// the Redis server's CPU time per task, which the machine's other load
// barely moves, unlike wall time.
func BenchmarkRedisScripts(b *testing.B) {
	db := redistest.New(b)
	client := db.Client(b)
	s, err := NewRedisStore(RedisOptions{Client: client, Prefix: fmt.Sprintf("%sscripts:", db.Prefix)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	r := NewRunner(Options{Store: s, Logger: quiet})
	const batch = 50
	payload := map[string]any{"user": "ada@example.com", "seq": 1, "at": time.Now().UnixNano()}
	var cpu [3]time.Duration
	b.ResetTimer()
	for range b.N {
		args := make([]any, 0, 2+2*batch)
		args = append(args, s.nonce(), batch)
		for range batch {
			t, err := r.newTask("noop", payload, nil)
			if err != nil {
				b.Fatal(err)
			}
			args = append(args, t.ID, packDef(t))
		}
		c0 := redisMainCPU(b, client)
		if err := s.run(ctx, enqueueScript, DefaultQueue, args...).Err(); err != nil {
			b.Fatal(err)
		}
		c1 := redisMainCPU(b, client)
		leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, batch, time.Minute)
		if err != nil || len(leases) != batch {
			b.Fatal(len(leases), err)
		}
		c2 := redisMainCPU(b, client)
		fin := []any{s.retMS(), s.keep}
		for _, l := range leases {
			fin = append(fin, l.Task.ID, fence(l), string(Succeeded), 0, "")
		}
		if lost, err := s.run(ctx, finishScript, DefaultQueue, fin...).Slice(); err != nil || len(lost) > 0 {
			b.Fatal(lost, err)
		}
		c3 := redisMainCPU(b, client)
		cpu[0] += c1 - c0
		cpu[1] += c2 - c1
		cpu[2] += c3 - c2
	}
	n := float64(b.N * batch)
	// INFO itself costs a little CPU on each side; it is included.
	b.ReportMetric(float64(cpu[0].Microseconds())/n, "enq-µs/task")
	b.ReportMetric(float64(cpu[1].Microseconds())/n, "claim-µs/task")
	b.ReportMetric(float64(cpu[2].Microseconds())/n, "fin-µs/task")
}
