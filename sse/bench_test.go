package sse

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkPublishToStreams publishes one event at a time to 100 streams
// of a topic over loopback and waits until every stream has read it: the
// path of a steady, moderate rate (one write per event per stream). Its
// allocs/op are per event, for all 100 streams.
func BenchmarkPublishToStreams(b *testing.B) {
	const streams = 100
	br := NewBroker(Options{Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(br)
	defer srv.Close()
	defer br.Shutdown(context.Background())
	var got atomic.Int64
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
				got.Add(events)
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
	b.ResetTimer()
	for i := range b.N {
		if _, err := br.Publish(context.Background(), "bench", Event{Data: data}); err != nil {
			b.Fatal(err)
		}
		for got.Load() < int64(i+1)*streams {
			runtime.Gosched() // the readers and writers are other goroutines
		}
	}
	b.StopTimer()
	for _, c := range bodies {
		c.Close()
	}
	wg.Wait()
}
