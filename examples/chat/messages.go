package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/realtime"
)

// Messages. A page sends a message with the "send" call; the server
// checks that the sender may write there, publishes it to the room's topic
// as the server (so that what a message says about its author can be
// trusted: pages believe only server messages), and then tells the
// mentioned users and the other side of a direct message.
//
// A room's history is its backplane topic: messages, and the edits and
// deletions that follow them ({"kind":"edit"|"delete","id":...}). Pages
// apply those live; "history" applies them to the pages of history it
// returns.

const (
	maxText     = 4000 // characters of a message
	maxMentions = 10   // users one message notifies, against floods
	pageSize    = 50
)

// mentionPattern finds "@handle" where it starts a word: not in an
// address like a@b.org.
var mentionPattern = regexp.MustCompile(`(?:^|[^A-Za-z0-9_@.+-])@([A-Za-z0-9_-]+)`)

// mentionedHandles returns the distinct valid handles text mentions, in
// order, at most maxMentions.
func mentionedHandles(text string) []string {
	var out []string
	for _, m := range mentionPattern.FindAllStringSubmatch(text, -1) {
		if h := strings.ToLower(m[1]); validHandle.MatchString(h) && !slices.Contains(out, h) {
			out = append(out, h)
			if len(out) == maxMentions {
				break
			}
		}
	}
	return out
}

// hubMark starts the hub's backplane envelopes.
const hubMark = realtime.EnvelopeMark

// serverEvent decodes a room message the server published, from its
// backplane envelope ({"op":"msg","room":...,"data":...} after hubMark;
// no "from": the server sent it).
// The hub has no History with "since" that decodes envelopes, so the app
// reads the backplane's and decodes them here.
func serverEvent(data []byte) (event, bool) {
	data = bytes.TrimPrefix(data, []byte(hubMark))
	var env struct {
		Op   string          `json:"op"`
		From realtime.Sender `json:"from"`
		Data json.RawMessage `json:"data"`
	}
	var e event
	if json.Unmarshal(data, &env) != nil || env.Op != "msg" || env.From.User != "" || json.Unmarshal(env.Data, &e) != nil {
		return e, false
	}
	return e, true
}

// canWrite is canRead plus: rooms need membership (a join), archived
// rooms are read-only, and a DM needs the other user to exist.
func (a *app) canWrite(ctx context.Context, me, topic string) error {
	if err := a.canRead(ctx, me, topic); err != nil {
		return err
	}
	if topic == lobbyTopic || strings.HasPrefix(topic, "user:") {
		return forbidden("nobody writes there")
	}
	if x, y, ok := dmUsers(topic); ok {
		other := x
		if x == me {
			other = y
		}
		if _, err := a.profile(ctx, other); err != nil {
			return notFound("no such user")
		}
		return nil
	}
	ok, err := a.store.IsMember(ctx, topic, me)
	if err != nil {
		return err
	}
	if !ok {
		return forbidden("join #" + topic + " first")
	}
	return nil
}

func checkText(text string) (string, error) {
	text = strings.TrimSpace(strings.ToValidUTF8(text, "\uFFFD"))
	if text == "" {
		return "", badRequest("a message needs some text")
	}
	if utf8.RuneCountInString(text) > maxText {
		return "", badRequest("a message is at most 4000 characters")
	}
	return text, nil
}

// send answers "send" {room, text} with the message's ID.
func (a *app) send(ctx context.Context, c *realtime.Call) (any, error) {
	u, err := a.caller(ctx, c)
	if err != nil {
		return nil, err
	}
	var req struct{ Room, Text string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	text, err := checkText(req.Text)
	if err != nil {
		return nil, err
	}
	if err := a.canWrite(ctx, u.Handle, req.Room); err != nil {
		return nil, err
	}
	now := time.Now()
	id, err := a.hub.Publish(ctx, req.Room, event{Kind: "msg", User: u.Handle, Name: u.Name, Text: text, At: now.UnixMilli()})
	if err != nil {
		return nil, err
	}
	_ = a.store.MarkRead(ctx, u.Handle, req.Room, id.String())
	a.afterSend(ctx, u, req.Room, id, text, now)
	return map[string]string{"id": id.String()}, nil
}

// afterSend tells the users a message concerns: the other side of a DM,
// and the mentioned users who can read the room, live on their user
// topic, and by mail (batched) when they are offline.
func (a *app) afterSend(ctx context.Context, from user, topic string, id rtkit.ID, text string, now time.Time) {
	var notify []string
	kind := "mention"
	if x, y, ok := dmUsers(topic); ok {
		kind = "dm"
		other := x
		if x == from.Handle {
			other = y
		}
		if err := a.store.TouchDM(ctx, x, y, now); err != nil {
			a.log.Warn("recording a conversation", "err", err)
		}
		notify = append(notify, other)
	} else {
		for _, h := range mentionedHandles(text) {
			if h != from.Handle && a.canRead(ctx, h, topic) == nil {
				if _, err := a.profile(ctx, h); err == nil {
					notify = append(notify, h)
				}
			}
		}
	}
	for _, h := range notify {
		ev := event{Kind: kind, ID: id.String(), Room: topic, User: from.Handle, Name: from.Name, Text: text, At: now.UnixMilli()}
		if _, err := a.hub.Publish(ctx, "user:"+h, ev); err != nil {
			a.log.Warn("notifying a user", "user", h, "err", err)
		}
		a.notifyOffline(ctx, h, pending{Kind: kind, Room: topic, ID: id.String(), From: from.Handle, Text: text, Time: now.UTC()})
	}
}

// findMessage returns the server message id of topic, with its edits
// applied; ok is false when it is not in history (or was deleted).
func (a *app) findMessage(ctx context.Context, topic, id string) (event, bool, error) {
	mid, err := rtkit.ParseID(id)
	if err != nil || mid.IsZero() {
		return event{}, false, badRequest("id is a message ID")
	}
	since := rtkit.ID{MS: mid.MS, Seq: mid.Seq - 1}
	if mid.Seq == 0 {
		since = rtkit.ID{MS: mid.MS - 1, Seq: ^uint64(0)}
	}
	// The backplane's history has no "before": read from the message on
	// (its later edits come after it).
	h, err := a.bp.History(ctx, topic, rtkit.HistoryOptions{Since: since})
	if err != nil {
		return event{}, false, err
	}
	msgs := applyEdits(h.Messages)
	if len(msgs) > 0 && msgs[0].ID == id {
		return msgs[0], true, nil
	}
	return event{}, false, nil
}

// applyEdits turns a slice of history into its messages, oldest first,
// with the edits and deletions within it applied.
func applyEdits(hist []*rtkit.Message) []event {
	var out []event
	index := map[string]int{}
	for _, m := range hist {
		e, ok := serverEvent(m.Data)
		if !ok {
			continue
		}
		switch e.Kind {
		case "msg":
			e.ID = m.ID.String()
			index[e.ID] = len(out)
			out = append(out, e)
		case "edit":
			if i, ok := index[e.ID]; ok {
				out[i].Text = e.Text
				out[i].Kind = "msg+edited"
			}
		case "delete":
			if i, ok := index[e.ID]; ok {
				out[i].Kind = "deleted"
			}
		}
	}
	return slices.DeleteFunc(out, func(e event) bool { return e.Kind == "deleted" })
}

// editMessage answers "msg.edit" {room, id, text}: the author edits.
func (a *app) editMessage(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ Room, ID, Text string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	text, err := checkText(req.Text)
	if err != nil {
		return nil, err
	}
	me := c.Conn.Identity.User
	if err := a.canWrite(ctx, me, req.Room); err != nil {
		return nil, err
	}
	m, ok, err := a.findMessage(ctx, req.Room, req.ID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound("no such message")
	}
	if m.User != me {
		return nil, forbidden("you can edit your own messages only")
	}
	_, err = a.hub.Publish(ctx, req.Room, event{Kind: "edit", ID: req.ID, User: me, Text: text})
	return nil, err
}

// deleteMessage answers "msg.delete" {room, id}: the author or an admin
// deletes, for everyone.
func (a *app) deleteMessage(ctx context.Context, c *realtime.Call) (any, error) {
	u, err := a.caller(ctx, c)
	if err != nil {
		return nil, err
	}
	var req struct{ Room, ID string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if err := a.canRead(ctx, u.Handle, req.Room); err != nil {
		return nil, err
	}
	m, ok, err := a.findMessage(ctx, req.Room, req.ID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound("no such message")
	}
	if m.User != u.Handle && u.Role != roleAdmin {
		return nil, forbidden("you can delete your own messages only")
	}
	_, err = a.hub.Publish(ctx, req.Room, event{Kind: "delete", ID: req.ID, User: u.Handle})
	return nil, err
}

// history answers "history" {room, before, limit}: up to limit (default
// 50) messages before the ID before (or the newest), oldest first, with
// "more" when older ones remain.
func (a *app) history(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct {
		Room, Before string
		Limit        int
	}
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if err := a.canRead(ctx, c.Conn.Identity.User, req.Room); err != nil {
		return nil, err
	}
	before, err := rtkit.ParseID(req.Before)
	if err != nil {
		return nil, badRequest("before is a message ID")
	}
	limit := req.Limit
	if limit <= 0 || limit > 200 {
		limit = pageSize
	}
	// The backplane's history selects the newest messages only: read a
	// window that grows until it holds a page before "before".
	for window := 4 * limit; ; window *= 2 {
		h, err := a.bp.History(ctx, req.Room, rtkit.HistoryOptions{Limit: window})
		if err != nil {
			return nil, err
		}
		msgs := applyEdits(h.Messages)
		if !before.IsZero() {
			msgs = slices.DeleteFunc(msgs, func(e event) bool {
				id, _ := rtkit.ParseID(e.ID)
				return id.Compare(before) >= 0
			})
		}
		all := len(h.Messages) < window
		if len(msgs) >= limit || all || window >= a.cfg.History {
			more := len(msgs) > limit || !all
			if len(msgs) > limit {
				msgs = msgs[len(msgs)-limit:]
			}
			if msgs == nil {
				msgs = []event{}
			}
			return map[string]any{"messages": msgs, "more": more && len(msgs) > 0}, nil
		}
	}
}

// dmOpen answers "dm.open" {user} with the conversation's topic.
func (a *app) dmOpen(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ User string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	me := c.Conn.Identity.User
	other := strings.ToLower(strings.TrimPrefix(req.User, "@"))
	if other == me {
		return nil, badRequest("pick someone else")
	}
	u, err := a.profile(ctx, other)
	if err != nil {
		return nil, notFound("no such user")
	}
	return map[string]string{"room": dmTopic(me, other), "user": u.Handle, "name": u.Name}, nil
}

// dmList answers "dm.list": the caller's conversations, newest first.
func (a *app) dmList(ctx context.Context, c *realtime.Call) (any, error) {
	me := c.Conn.Identity.User
	dms, err := a.store.DMs(ctx, me)
	if err != nil {
		return nil, err
	}
	marks, err := a.store.ReadMarkers(ctx, me)
	if err != nil {
		return nil, err
	}
	type conv struct {
		Room   string `json:"room"`
		User   string `json:"user"`
		Name   string `json:"name"`
		Unread int    `json:"unread"`
		Online bool   `json:"online"`
	}
	out := []conv{}
	for _, d := range dms {
		u, err := a.profile(ctx, d.With)
		if err != nil {
			continue
		}
		topic := dmTopic(me, d.With)
		n, _ := a.online(ctx, "user:"+d.With)
		out = append(out, conv{Room: topic, User: u.Handle, Name: u.Name, Unread: a.unread(ctx, topic, marks[topic], me), Online: n > 0})
	}
	return out, nil
}

// publicUser is what users see of each other.
type publicUser struct {
	Handle string `json:"handle"`
	Name   string `json:"name"`
	Role   string `json:"role"`
}

// usersList answers "users.list": everyone's handle and name (for
// starting a DM and completing mentions).
func (a *app) usersList(ctx context.Context, c *realtime.Call) (any, error) {
	users, err := a.store.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]publicUser, 0, len(users))
	for _, u := range users {
		if !u.Banned {
			out = append(out, publicUser{u.Handle, u.Name, u.Role})
		}
	}
	return out, nil
}
