package sse

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublishToStreams publishes one event at a time to 100 streams
// of a topic over loopback and waits until every stream has read it: the
// path of a steady, moderate rate (one write per event per stream). Its
// allocs/op are per event, for all 100 streams; cpu-ns/op (where the
// platform reports it) is the process's CPU time per event, readers
// included.
func BenchmarkPublishToStreams(b *testing.B) { benchmarkPublish(b, 0) }

// BenchmarkPublishToStreamsSpaced is BenchmarkPublishToStreams with 2 ms
// between events, as at a steady rate where each event finds every
// stream idle: compare its cpu-ns/op (its ns/op includes the pauses).
func BenchmarkPublishToStreamsSpaced(b *testing.B) { benchmarkPublish(b, 2*time.Millisecond) }

func benchmarkPublish(b *testing.B, pause time.Duration) {
	const streams = 100
	br := NewBroker(Options{Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(br)
	defer srv.Close()
	defer br.Shutdown(context.Background())
	var got, want atomic.Int64
	all := make(chan struct{}, 1) // got reached want
	var wg sync.WaitGroup
	ready := make(chan struct{}, streams)
	var bodies []io.Closer
	for range streams {
		resp, err := http.Get(srv.URL + "?topic=bench")
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			first := true
			for {
				n, err := resp.Body.Read(buf)
				events := int64(bytes.Count(buf[:n], []byte("data: ")))
				if first && n > 0 {
					first = false
					ready <- struct{}{}
				}
				if events > 0 && got.Add(events) == want.Load() {
					all <- struct{}{}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	for range streams {
		<-ready
	}
	data := []byte(`{"seq":1,"ts":1764662855000000000}`)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := range b.N {
		if pause > 0 {
			time.Sleep(pause)
		}
		want.Store(int64(i+1) * streams)
		if _, err := br.Publish(context.Background(), "bench", Event{Data: data}); err != nil {
			b.Fatal(err)
		}
		<-all
	}
	b.StopTimer()
	if cpu0 >= 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	for _, c := range bodies {
		c.Close()
	}
	wg.Wait()
}
