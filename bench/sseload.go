package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// The sse suite compares rtkit's SSE broker with go-sse and r3labs/sse
// (serve_sse.go), with the workloads of workloads.go. The topic is
// "bench"; the publisher POSTs each payload to the child's /publish, which
// calls the library's publish.
//
// Every subscriber is a plain net/http GET of /events, parsed the same
// minimal way whatever the server: read the body into a reused buffer,
// split it into events on blank lines ("\n\n"; none of the three writes
// CRLF), take the payload from each event's data line and count it against
// its sequence number as the WebSocket generator does. The libraries'
// client packages are not used.
//
// A subscriber is counted only once it is subscribed: after every request
// is written, the generator publishes a probe event (data "probe", no
// payload) every probeEvery until each subscriber has received an event
// with data, then waits until the streams are quiet. go-sse sends nothing,
// not even the response headers, before a stream's first event, so the
// first bytes would not do; a probe proves the subscription the same way
// for all three.

var sseSuite = loadSuite{
	name:    "sse",
	servers: []string{"rtkit", "go-sse", "r3labs-sse"},
	child:   func(server string) string { return "sse/" + server },
	target: func(cfg config, server string, ch *child) target {
		query := "topic=" + benchRoom
		if server == "r3labs-sse" {
			query = "stream=" + benchRoom // r3labs names its streams so
		}
		return sseTarget{
			events:  "http://" + ch.addr + "/events?" + query,
			publish: "http://" + ch.addr + "/publish",
			posters: cfg.window,
		}
	},
}

const (
	probeEvery = 200 * time.Millisecond
	probeLimit = time.Minute // for every subscriber to get a probe
)

// sseTarget is an SSE server's endpoints.
type sseTarget struct {
	events, publish string
	posters         int // concurrent POST /publish requests at most
}

func (t sseTarget) room(ctx context.Context, n int) (audience, error) {
	return openStreams(ctx, t, n)
}

func (t sseTarget) idle(ctx context.Context, n int) (func(), error) {
	r, err := openStreams(ctx, t, n)
	if err != nil {
		return nil, err
	}
	return r.close, nil
}

// sseRoom is n event streams of the bench topic and a publisher.
type sseRoom struct {
	*tally
	t       sseTarget
	streams *http.Client
	pub     *posters
	cancel  context.CancelFunc // ends the streams
	wg      sync.WaitGroup     // the readers
	ready   atomic.Int64       // streams that got an event with data

	closeOnce sync.Once
}

// openStreams opens n streams, a few requests at a time, and returns once
// every one has received a probe and the streams are quiet.
func openStreams(ctx context.Context, t sseTarget, n int) (*sseRoom, error) {
	streamCtx, cancel := context.WithCancel(context.Background())
	r := &sseRoom{
		tally:   newTally(n),
		t:       t,
		streams: &http.Client{Transport: &http.Transport{DisableCompression: true}},
		pub:     newPosters(t.publish, t.posters),
		cancel:  cancel,
	}
	const parallel = 32
	slots := make(chan struct{}, parallel)
	for _, s := range r.sinks {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			r.close()
			return nil, ctx.Err()
		}
		r.wg.Add(1)
		go r.stream(streamCtx, s, slots)
	}
	for range parallel {
		slots <- struct{}{} // every request written (or failed)
	}
	if err := r.probe(ctx); err != nil {
		r.close()
		return nil, err
	}
	r.waitQuiet(10 * time.Second)
	return r, nil
}

// probe publishes probes until every stream got an event with data.
func (r *sseRoom) probe(ctx context.Context) error {
	deadline := time.Now().Add(probeLimit)
	for {
		if n, err := r.readErrors(); n > 0 {
			return fmt.Errorf("%d streams failed, first: %w", n, err)
		}
		if r.ready.Load() == int64(len(r.sinks)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d streams got no probe within %s", int64(len(r.sinks))-r.ready.Load(), len(r.sinks), probeLimit)
		}
		if err := r.pub.post(ctx, []byte("probe")); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		time.Sleep(probeEvery)
	}
}

// stream is one subscriber: it frees its slot once its request is written,
// then reads the stream until it ends.
func (r *sseRoom) stream(ctx context.Context, s *sink, slot <-chan struct{}) {
	defer r.wg.Done()
	var once sync.Once
	free := func() { once.Do(func() { <-slot }) }
	defer free()
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { free() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, r.t.events, nil)
	if err != nil {
		r.readFailed(err)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := r.streams.Do(req)
	if err != nil {
		r.readFailed(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.readFailed(fmt.Errorf("GET /events: %s", resp.Status))
		return
	}
	r.read(resp.Body, s)
}

var (
	eventEnd   = []byte("\n\n")
	dataPrefix = []byte("data:")
)

// read is a subscriber's reader: the per-event work measured.
func (r *sseRoom) read(body io.Reader, s *sink) {
	buf := make([]byte, 0, 16<<10)
	ready := false
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // an event longer than the buffer
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			now := time.Now().UnixNano()
			rest := buf
			var msgs, events int64
			for {
				i := bytes.Index(rest, eventEnd)
				if i < 0 {
					break
				}
				event := rest[:i]
				rest = rest[i+len(eventEnd):]
				events++
				for len(event) > 0 {
					line := event
					if j := bytes.IndexByte(event, '\n'); j >= 0 {
						line, event = event[:j], event[j+1:]
					} else {
						event = nil
					}
					if !bytes.HasPrefix(line, dataPrefix) {
						continue
					}
					if !ready {
						ready = true
						r.ready.Add(1)
					}
					if seq, ts, ok := parsePayload(line); ok {
						msgs++
						r.got(s, seq, ts, now)
					}
				}
			}
			buf = buf[:copy(buf, rest)]
			s.frames.Add(events)
			if msgs > 0 {
				s.msgs.Add(msgs)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // streams do not end on their own here
			}
			r.readFailed(err)
			return
		}
	}
}

// publish hands the next payload, stamped with the current time, to a
// poster (see posters).
func (r *sseRoom) publish(ctx context.Context) error {
	_, data := r.next()
	return r.pub.send(ctx, data)
}

// close ends every stream and waits for the readers; after it the
// subscribers' histograms may be read.
func (r *sseRoom) close() {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		r.pub.close()
		r.cancel()
		r.wg.Wait()
		r.streams.CloseIdleConnections()
	})
}
