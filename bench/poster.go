package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// posters publish payloads by POSTing each to a server child's /publish,
// whose handler calls the server's own publish function: the SSE suite's
// only way to publish, and the realtime suite's server-side publisher
// (lat50s).
//
// A request waits for the server's publish call to return, so one poster
// alone would cap the rate at one publish per round trip (two trips through
// busy schedulers); n of them, as many as the fanout window, let every
// payload in flight be a request of its own, as a WebSocket publisher
// writes without waiting for a reply.
type posters struct {
	url    string
	client *http.Client
	posts  chan []byte
	wg     sync.WaitGroup
	err    atomic.Pointer[error]
	once   sync.Once
}

// newPosters starts n posters to url.
func newPosters(url string, n int) *posters {
	n = max(n, 1)
	p := &posters{
		url: url,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DisableCompression: true, MaxIdleConnsPerHost: n}},
		posts: make(chan []byte),
	}
	for range n {
		p.wg.Go(func() {
			for data := range p.posts {
				if err := p.post(context.Background(), data); err != nil {
					p.err.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	return p
}

// post publishes data and waits for the server's answer.
func (p *posters) post(ctx context.Context, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST /publish: %s", resp.Status)
	}
	return nil
}

// send hands a copy of data to a poster, waiting for one to be free. It
// returns the first error of any earlier post.
func (p *posters) send(ctx context.Context, data []byte) error {
	if err := p.err.Load(); err != nil {
		return *err
	}
	select {
	case p.posts <- bytes.Clone(data):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the posters once their requests are answered.
func (p *posters) close() {
	p.once.Do(func() {
		close(p.posts)
		p.wg.Wait()
		p.client.CloseIdleConnections()
	})
}
