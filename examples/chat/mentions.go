package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
)

// Mentions: "@bob" in a room message mails bob when he is offline, that is
// in no room's presence on any replica.
//
// Every replica receives every room message from the backplane, but only
// the one that accepted it acts on it, so one message makes one mail
// however many replicas run: the envelope names the sending connection,
// and each replica knows its own connections from the hub's OnConnect.
// The task's unique key (message and recipient) guards against the rest,
// such as two deliveries of one message. The worker that sends the mail
// may be any replica's (the task store is shared).

const (
	maxMentions  = 10          // recipients per message, against mail floods
	connGrace    = time.Minute // how long a closed connection still counts as local
	mentionQueue = 256         // messages waiting for the mention worker
)

// mentionPattern finds "@name" where it starts a word: not in an address
// like a@b.org. A longer run of name characters is no name (see
// validName).
var mentionPattern = regexp.MustCompile(`(?:^|[^A-Za-z0-9_@.+-])@([A-Za-z0-9_-]+)`)

// mentionedNames returns the distinct valid names text mentions, in
// order, at most maxMentions.
func mentionedNames(text string) []string {
	var names []string
	for _, m := range mentionPattern.FindAllStringSubmatch(text, -1) {
		if name := m[1]; validName.MatchString(name) && !slices.Contains(names, name) {
			names = append(names, name)
			if len(names) == maxMentions {
				break
			}
		}
	}
	return names
}

// chatMessage is a room message that mentions someone.
type chatMessage struct {
	ID   rtkit.ID
	Room string
	From string
	Text string
}

// mentionFeed picks, from the rooms' messages on the backplane, those
// that this replica accepted and that mention someone, and queues them for
// the app's mention worker. It subscribes on the first connection, so
// that the subscriptions exist before any message they must see. A full
// queue drops messages (logged): the worker is far behind.
type mentionFeed struct {
	log   *slog.Logger
	rooms []string
	queue chan chatMessage

	mu     sync.Mutex           // guards conns and pruned; held briefly, HandleMessage takes it
	conns  map[string]time.Time // this replica's connections: zero while open, else when closed
	pruned time.Time

	subMu sync.Mutex // held while subscribing
	subs  []*rtkit.Subscription
}

func newMentionFeed(rooms []string, log *slog.Logger) *mentionFeed {
	return &mentionFeed{log: log, rooms: rooms, queue: make(chan chatMessage, mentionQueue), conns: make(map[string]time.Time)}
}

// connected records a local connection and makes sure the rooms are
// subscribed (on the connection's goroutine, before it reads).
func (f *mentionFeed) connected(bp rtkit.Backplane, c realtime.ConnInfo) {
	f.mu.Lock()
	f.conns[c.ID] = time.Time{}
	if now := time.Now(); now.Sub(f.pruned) > connGrace {
		f.pruned = now
		for id, closed := range f.conns {
			if !closed.IsZero() && now.Sub(closed) > connGrace {
				delete(f.conns, id)
			}
		}
	}
	f.mu.Unlock()

	f.subMu.Lock()
	defer f.subMu.Unlock()
	if f.subs != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	subs := make([]*rtkit.Subscription, 0, len(f.rooms))
	for _, room := range f.rooms {
		sub, err := bp.Subscribe(ctx, room, rtkit.SubscribeOptions{}, f)
		if err != nil {
			f.log.Error("mentions: subscribing to the rooms failed; retrying on the next connection", "room", room, "err", err)
			for _, s := range subs {
				_ = s.Close()
			}
			return
		}
		subs = append(subs, sub)
	}
	f.subs = subs
}

// disconnected keeps a closed connection's messages local for connGrace:
// a message may reach the feed after its sender left.
func (f *mentionFeed) disconnected(c realtime.ConnInfo, _ error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[c.ID] = time.Now()
}

func (f *mentionFeed) local(conn string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.conns[conn]
	return ok
}

// close ends the subscriptions.
func (f *mentionFeed) close() {
	f.subMu.Lock()
	defer f.subMu.Unlock()
	for _, s := range f.subs {
		_ = s.Close()
	}
	f.subs = nil
}

// HandleMessage queues a local, persistent message with an "@".
func (f *mentionFeed) HandleMessage(m *rtkit.Message) {
	if m.Ephemeral() || !bytes.Contains(m.Data, []byte("@")) {
		return
	}
	env, ok := realtime.DecodeMessage(m)
	if !ok || env.From.Conn == "" || !f.local(env.From.Conn) {
		return
	}
	text := messageText(env.Data)
	if !strings.Contains(text, "@") {
		return
	}
	select {
	case f.queue <- chatMessage{ID: m.ID, Room: m.Topic, From: env.From.User, Text: text}:
	default:
		f.log.Warn("mentions: the worker is behind; a message's mentions are dropped", "room", m.Topic, "msg", m.ID)
	}
}

// HandleGap: messages were lost; so are their mentions.
func (f *mentionFeed) HandleGap(after rtkit.ID) {
	f.log.Warn("mentions: room messages were lost; their mentions mail nobody", "after", after)
}

// messageText is the text of a message's data, as the pages show it:
// {"text": "..."} or a string.
func messageText(data json.RawMessage) string {
	var v struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(data, &v) == nil && v.Text != "" {
		return v.Text
	}
	var s string
	if json.Unmarshal(data, &s) == nil {
		return s
	}
	return ""
}

// notifyMentions runs until ctx ends: it mails the offline users that the
// queued messages mention, one message at a time, in order.
func (a *app) notifyMentions(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.mentions.queue:
			a.notify(ctx, m)
		}
	}
}

func (a *app) notify(ctx context.Context, m chatMessage) {
	for _, name := range mentionedNames(m.Text) {
		if name == m.From {
			continue
		}
		p, err := a.users.get(ctx, name)
		if err != nil {
			if !errors.Is(err, cache.ErrNotFound) && ctx.Err() == nil {
				a.log.Warn("mentions: looking up a user", "user", name, "err", err)
			}
			continue // nobody of that name
		}
		online, err := a.online(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("mentions: reading presence; no mail", "user", name, "err", err)
			}
			continue
		}
		if online {
			continue
		}
		a.enqueueMail(ctx, uniqueKey("mention", m.Room, m.ID.String(), name), &email{
			MessageID: newMessageID(a.from),
			Date:      time.Now(),
			To:        p.Email,
			Subject:   fmt.Sprintf("%s mentioned you in #%s", m.From, m.Room),
			Body: fmt.Sprintf("Hi %s,\n\n%s mentioned you in #%s while you were away:\n\n%s\n\nSign in to the chat to answer.\n",
				p.Name, m.From, m.Room, quote(m.Text)),
		})
	}
}

// online reports whether user is in some room, on any replica.
func (a *app) online(ctx context.Context, user string) (bool, error) {
	for _, room := range a.cfg.Rooms {
		members, err := a.hub.Presence(ctx, room)
		if err != nil {
			return false, err
		}
		if slices.ContainsFunc(members, func(m realtime.Member) bool { return m.User == user }) {
			return true, nil
		}
	}
	return false, nil
}

// quote prefixes every line of text with "> ".
func quote(text string) string {
	return "> " + strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\n> ")
}
