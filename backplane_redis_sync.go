package rtkit

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// After a subscription is confirmed (first subscription, a reconnect, a
// move to another Cluster node) or a live payload does not follow the
// last delivered message, the topic is read from its stream, and only
// then delivers live messages again.

// How a topic is read from its stream.
type syncMode int

const (
	syncFirst  syncMode = iota // first subscription: learn the newest ID
	syncResume                 // after a lost connection: everything after the last delivered
	syncVerify                 // a live batch did not follow the last delivered: likewise
)

// sync reads each topic's stream in one pipeline and releases the
// messages held meanwhile. It resumes after the last delivered message
// whatever server it now talks to (a restarted Redis, a promoted replica):
// stream IDs survive replication, so finding that message proves nothing
// was missed, and only its absence is a gap.
func (sh *redisShard) sync(ctx context.Context, topics []*redisTopic) error {
	pipe := sh.b.client.Pipeline()
	type read struct {
		t       *redisTopic
		mode    syncMode
		from    ID
		gen     uint64
		downFor time.Duration
		entries *redis.XMessageSliceCmd
		tail    *redis.XMessageSliceCmd
	}
	reads := make([]read, len(topics))
	for i, t := range topics {
		t.mu.Lock()
		r := read{t: t, from: t.last, gen: t.gen}
		switch {
		case !t.hasLast:
			r.mode = syncFirst
		case t.downSince.IsZero():
			r.mode = syncVerify
		default:
			r.mode = syncResume
			r.downFor = time.Since(t.downSince)
		}
		t.mu.Unlock()
		switch {
		case r.mode == syncFirst:
			r.entries = pipe.XRevRangeN(ctx, t.key, "+", "-", 1)
		case r.from.IsZero():
			r.entries = pipe.XRangeN(ctx, t.key, "-", "+", int64(t.size)+1)
		default:
			// The tail first: if the range then holds nothing, nothing
			// at or after from existed when the tail was read either.
			r.tail = pipe.XRevRangeN(ctx, t.key, "+", "-", 1)
			r.entries = pipe.XRange(ctx, t.key, r.from.String(), "+")
		}
		reads[i] = r
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var again []*redisTopic
	for _, r := range reads {
		msgs, err := streamMessages(r.t.name, r.entries.Val())
		if err != nil {
			return err
		}
		var tail ID
		if r.tail != nil && len(r.tail.Val()) > 0 {
			if tail, err = ParseID(r.tail.Val()[0].ID); err != nil {
				return err
			}
		}
		if r.t.applySync(r.gen, r.mode, r.from, r.downFor, msgs, tail) {
			again = append(again, r.t)
		}
	}
	if len(again) > 0 {
		sh.mu.Lock()
		sh.syncs = append(sh.syncs, again...)
		sh.mu.Unlock()
		sh.signal()
	}
	return nil
}

// applySync delivers what a stream read found and the messages held
// meanwhile, then goes live. msgs are the entries from the last delivered
// message on, tail the stream's newest entry. It reports whether the
// stream must be read again (held messages were dropped, or did not
// follow).
func (t *redisTopic) applySync(gen uint64, mode syncMode, from ID, downFor time.Duration, msgs []*Message, tail ID) (again bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		// The connection failed since the read; the topic is queued for
		// a fresh one after it is subscribed again.
		return false
	}
	switch mode {
	case syncFirst:
		if len(msgs) > 0 {
			t.last = msgs[0].ID
		}
		t.hasLast = true
	case syncResume, syncVerify:
		complete, news := true, msgs
		switch {
		case from.IsZero():
			// Nothing was ever delivered: complete unless trimming (by
			// count, or by age over a long outage) may have dropped
			// messages published since.
			complete = len(msgs) < t.size && (t.ttl == 0 || downFor < t.ttl)
		case len(msgs) > 0 && msgs[0].ID == from:
			news = msgs[1:]
		case mode == syncVerify && expiredSince(from, msgs, t.ttl):
			// Aged out of the stream while this node listened: whatever
			// followed it was delivered live.
		default:
			complete = false
		}
		if !complete {
			t.subs.dispatchGap()
		}
		if len(msgs) == 0 && !from.IsZero() {
			// The stream holds nothing at or after the last delivered
			// message: Redis lost it, or it was never there (a forged
			// payload). Follow the stream from its real end.
			t.last = tail
		}
		for _, m := range news {
			t.dispatchLocked(m)
		}
	}
	for _, hb := range t.buf {
		if !t.follows(hb.prev, hb.msgs) && !t.covered(hb.msgs) {
			again = true // read the stream again; it holds the rest
			break
		}
		for _, m := range hb.msgs {
			t.dispatchLocked(m)
		}
	}
	again = again || t.bufFull
	t.buf, t.held, t.bufFull = nil, 0, false
	t.live = !again
	if !again {
		t.downSince = time.Time{}
	}
	if !t.isReady {
		t.isReady = true
		close(t.ready)
	}
	return again
}

// expiredSince reports whether from may have aged out of a stream whose
// entries live ttl (zero: forever): msgs (what the stream holds after it)
// or the clock are at least ttl past it.
func expiredSince(from ID, msgs []*Message, ttl time.Duration) bool {
	if ttl <= 0 {
		return false
	}
	newest := uint64(time.Now().UnixMilli())
	if n := len(msgs); n > 0 && msgs[n-1].ID.MS > newest {
		newest = msgs[n-1].ID.MS
	}
	return from.MS+uint64(ttl.Milliseconds()) <= newest
}
