package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/examples/game/snake"
	"github.com/rtkit/rtkit/realtime"
)

// The calls a page makes. Every input is checked here, on the node that
// took the call, before it goes to the node that runs the match:
//
//	game.join  {"name":"ada"} or {"spectate":true}  → {"match":"m1","slot":0}   (slot -1: spectator)
//	game.input {"m":"m1","p":0,"s":7,"t":1234,"d":1} → null
//	game.ack   {"m":"m1","t":1234}                   → {"t":<server time, ms>}
//	game.leave {"m":"m1"}                            → null
//
// An input names the match, the player's slot, its sequence number, the
// tick it was meant for and a direction (0 up, 1 right, 2 down, 3 left),
// and nothing else: there is no field for a position, so a client cannot
// teleport, and an unknown field is a bad_request. The slot must be the
// caller's own (forbidden otherwise), and each user may send InputRate
// inputs a second (rate_limited beyond).

func badRequest(format string, args ...any) error {
	return &realtime.Error{Code: realtime.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%v", err)
	}
	if dec.More() {
		return badRequest("one object expected")
	}
	return nil
}

type joinReq struct {
	Name     string `json:"name"`
	Spectate bool   `json:"spectate"`
}

func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.TrimSpace(s))
	for utf8.RuneCountInString(s) > 16 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	if s == "" {
		return "player"
	}
	return s
}

func (a *app) callJoin(ctx context.Context, c *realtime.Call) (any, error) {
	var req joinReq
	if len(c.Data) > 0 && string(c.Data) != "null" {
		if err := decodeStrict(c.Data, &req); err != nil {
			return nil, err
		}
	}
	user := c.Conn.Identity.User
	var s seat
	if req.Spectate {
		ms, err := a.lobby.Matches(ctx)
		if err != nil {
			return nil, err
		}
		best := -1
		for id, n := range ms {
			if n > best || (n == best && id < s.Match) {
				s, best = seat{Match: id, Slot: -1}, n
			}
		}
		if best < 0 {
			return nil, &realtime.Error{Code: realtime.CodeNotFound, Message: "no match to watch"}
		}
	} else {
		var err error
		if s, err = a.lobby.Join(ctx, user, cleanName(req.Name)); err != nil {
			return nil, err
		}
		ctl, _ := json.Marshal(control{Kind: "join", User: user, Slot: s.Slot, Name: cleanName(req.Name)})
		if _, err := a.bp.Publish(ctx, controlTopic(s.Match), ctl, rtkit.PublishOptions{Ephemeral: true}); err != nil {
			return nil, err
		}
	}
	a.adopt(a.ctx, s.Match)
	return s, nil
}

type inputReq struct {
	Match string    `json:"m"`
	Slot  *int      `json:"p"`
	Seq   uint32    `json:"s"`
	Tick  uint64    `json:"t"`
	Dir   snake.Dir `json:"d"`
}

// parseInput decodes and checks an input's fields (not yet who sends it).
func parseInput(data []byte) (inputReq, error) {
	var in inputReq
	if err := decodeStrict(data, &in); err != nil {
		return in, err
	}
	switch {
	case in.Match == "" || in.Slot == nil:
		return in, badRequest("m (match) and p (slot) are required")
	case in.Seq == 0 || in.Seq > 1<<31:
		return in, badRequest("s (sequence number) must be from 1 to 2^31")
	case !in.Dir.Valid():
		return in, badRequest("d (direction) must be 0, 1, 2 or 3")
	case in.Tick > 1<<53:
		return in, badRequest("t (tick) out of range")
	}
	return in, nil
}

func (a *app) callInput(ctx context.Context, c *realtime.Call) (any, error) {
	in, err := parseInput(c.Data)
	if err != nil {
		return nil, err
	}
	user := c.Conn.Identity.User
	s, ok, err := a.lobby.Seat(ctx, user)
	if err != nil {
		return nil, err
	}
	if !ok || s.Match != in.Match || s.Slot != *in.Slot {
		return nil, &realtime.Error{Code: realtime.CodeForbidden, Message: "not your player"}
	}
	if !a.limits.allow(user, time.Now()) {
		return nil, &realtime.Error{Code: realtime.CodeRateLimited, Message: "too many inputs"}
	}
	ctl, _ := json.Marshal(control{Kind: "in", User: user, Slot: s.Slot, Seq: in.Seq, Tick: in.Tick, Dir: int8(in.Dir)})
	_, err = a.bp.Publish(ctx, controlTopic(s.Match), ctl, rtkit.PublishOptions{Ephemeral: true})
	return nil, err
}

type ackReq struct {
	Match string `json:"m"`
	Tick  uint64 `json:"t"`
}

func (a *app) callAck(ctx context.Context, c *realtime.Call) (any, error) {
	var req ackReq
	if err := decodeStrict(c.Data, &req); err != nil {
		return nil, err
	}
	if err := rtkit.CheckTopic(controlTopic(req.Match)); err != nil || req.Match == "" {
		return nil, badRequest("m (match) is required")
	}
	ctl, _ := json.Marshal(control{Kind: "ack", User: c.Conn.Identity.User, Tick: req.Tick})
	if _, err := a.bp.Publish(ctx, controlTopic(req.Match), ctl, rtkit.PublishOptions{Ephemeral: true}); err != nil {
		return nil, err
	}
	return map[string]int64{"t": time.Now().UnixMilli()}, nil
}

func (a *app) callLeave(ctx context.Context, c *realtime.Call) (any, error) {
	var req ackReq
	if err := decodeStrict(c.Data, &req); err != nil {
		return nil, err
	}
	user := c.Conn.Identity.User
	if err := a.lobby.Leave(ctx, req.Match, user); err != nil {
		return nil, err
	}
	ctl, _ := json.Marshal(control{Kind: "leave", User: user})
	_, err := a.bp.Publish(ctx, controlTopic(req.Match), ctl, rtkit.PublishOptions{Ephemeral: true})
	return nil, err
}

// limiter is a token bucket per user (burst: one second's worth).
type limiter struct {
	mu      sync.Mutex
	rate    float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (l *limiter) init(rate float64) {
	l.rate, l.buckets = rate, map[string]*bucket{}
}

func (l *limiter) allow(user string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[user]
	if b == nil {
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[user] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forget drops the buckets of users idle for longer than d (full again).
func (l *limiter) forget(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for u, b := range l.buckets {
		if time.Since(b.last) > d {
			delete(l.buckets, u)
		}
	}
}
