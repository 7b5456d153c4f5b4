package main

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
)

// target connects the load generator to one server under test: the
// realtime suite's over WebSocket (loadgen.go), the sse suite's over
// plain HTTP (sseload.go). The workloads (workloads.go) see only this.
type target interface {
	// room connects n subscribers to the bench topic and a publisher, and
	// returns once every subscriber is subscribed and the connections are
	// quiet.
	room(ctx context.Context, n int) (audience, error)
	// idle opens n connections that then do nothing; close closes them.
	idle(ctx context.Context, n int) (close func(), err error)
}

// audience is a room of subscribers and its publisher.
type audience interface {
	// publish sends the next payload, stamped with the current time.
	publish(ctx context.Context) error
	// published is how many payloads publish sent; publisher only.
	published() uint64
	// completed yields one value per payload every subscriber got.
	completed() <-chan struct{}
	// delivered returns the payloads all subscribers received so far.
	delivered() int64
	// measureFrom records the latency of payloads from seq on.
	measureFrom(seq uint64)
	// readErrors returns how many subscribers failed and the first error.
	readErrors() (int64, error)
	// close closes every connection and waits for the readers.
	close()
	// latencies merges the subscribers' histograms; call after close.
	latencies() *histogram
}

const (
	ringSize = 1 << 16 // sequence numbers tracked at once; far above the window
	ringMask = ringSize - 1
)

// tally is the bookkeeping every room shares, whatever its protocol: the
// payloads, how many subscribers got each, and the readers' failures.
type tally struct {
	sinks []*sink

	counts [ringSize]atomic.Int32 // deliveries of seq, at seq&ringMask
	done   chan struct{}          // one value per payload every subscriber got
	from   atomic.Uint64          // first seq whose latency is recorded

	seq     uint64 // next seq; publisher only
	dataBuf []byte // publisher only

	closing  atomic.Bool
	readErrs atomic.Int64
	firstErr atomic.Pointer[error]
}

// sink is one subscriber's share of a tally.
type sink struct {
	msgs   atomic.Int64 // payloads received
	frames atomic.Int64 // frames (WebSocket) or events (SSE) received
	hist   histogram    // the reader's only, until it ends
}

func newTally(n int) *tally {
	t := &tally{sinks: make([]*sink, n), done: make(chan struct{}, ringSize)}
	for i := range t.sinks {
		t.sinks[i] = &sink{}
	}
	t.from.Store(^uint64(0))
	return t
}

// next returns the next payload and its seq, stamped with the current
// time; valid until the next call.
func (t *tally) next() (uint64, []byte) {
	seq := t.seq
	t.seq++
	t.counts[seq&ringMask].Store(0)
	t.dataBuf = appendPayload(t.dataBuf[:0], seq, time.Now().UnixNano())
	return seq, t.dataBuf
}

// got counts payload seq, sent at ts (Unix nanoseconds), received by s at
// now.
func (t *tally) got(s *sink, seq uint64, ts, now int64) {
	if seq >= t.from.Load() {
		s.hist.record((now - ts) / 1000)
	}
	if t.counts[seq&ringMask].Add(1) == int32(len(t.sinks)) {
		select {
		case t.done <- struct{}{}:
		default:
		}
	}
}

func (t *tally) readFailed(err error) {
	if t.closing.Load() {
		return
	}
	t.readErrs.Add(1)
	t.firstErr.CompareAndSwap(nil, &err)
}

func (t *tally) published() uint64          { return t.seq }
func (t *tally) completed() <-chan struct{} { return t.done }
func (t *tally) measureFrom(seq uint64)     { t.from.Store(seq) }

func (t *tally) delivered() int64 {
	var n int64
	for _, s := range t.sinks {
		n += s.msgs.Load()
	}
	return n
}

func (t *tally) frames() int64 {
	var n int64
	for _, s := range t.sinks {
		n += s.frames.Load()
	}
	return n
}

// waitQuiet waits until no subscriber received a frame for 200ms (joins'
// presence events, probes), at most limit.
func (t *tally) waitQuiet(limit time.Duration) {
	deadline := time.Now().Add(limit)
	last := t.frames()
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		n := t.frames()
		if n == last {
			return
		}
		last = n
	}
}

func (t *tally) readErrors() (int64, error) {
	if p := t.firstErr.Load(); p != nil {
		return t.readErrs.Load(), *p
	}
	return 0, nil
}

func (t *tally) latencies() *histogram {
	var h histogram
	for _, s := range t.sinks {
		h.merge(&s.hist)
	}
	return &h
}

var (
	seqKey = []byte(`{"seq":`)
	tsKey  = []byte(`,"ts":`)
)

// appendPayload appends {"seq":SEQ,"ts":UNIXNANOS}, every payload.
func appendPayload(b []byte, seq uint64, ts int64) []byte {
	b = append(b, seqKey...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, tsKey...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '}')
}
