package main

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
)

// Rooms and who may read them. Every topic a page can join, stream or
// write to is one of:
//
//	<room>        a chat room: public (anyone joins) or private (members only)
//	dm:<a>:<b>    the direct messages of users a and b (a < b)
//	user:<handle> one user's notifications (mentions, new DMs, room changes)
//	sys:lobby     everyone's: the room list changed
//
// canRead decides them all, for the hub's Authorize (join, presence,
// typing) and the SSE broker's (streams) alike, so that a private room's
// history, presence and live messages reach its members only, whichever
// way they are asked for.

var validRoom = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,31}$`)

const roomRule = "a room name is 2 to 32 characters: lowercase letters a-z, digits, _ or -"

const lobbyTopic = "sys:lobby"

func forbidden(msg string) error { return &realtime.Error{Code: realtime.CodeForbidden, Message: msg} }
func badRequest(msg string) error {
	return &realtime.Error{Code: realtime.CodeBadRequest, Message: msg}
}
func notFound(msg string) error { return &realtime.Error{Code: realtime.CodeNotFound, Message: msg} }

// dmTopic is the topic of a's and b's direct messages.
func dmTopic(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// dmUsers returns the two users of a dm topic.
func dmUsers(topic string) (string, string, bool) {
	rest, ok := strings.CutPrefix(topic, "dm:")
	if !ok {
		return "", "", false
	}
	a, b, ok := strings.Cut(rest, ":")
	return a, b, ok && validHandle.MatchString(a) && validHandle.MatchString(b) && a < b
}

// canRead reports (as a *realtime.Error) whether handle may read topic.
func (a *app) canRead(ctx context.Context, handle, topic string) error {
	switch {
	case topic == lobbyTopic:
		return nil
	case strings.HasPrefix(topic, "user:"):
		if topic != "user:"+handle {
			return forbidden("not your notifications")
		}
		return nil
	case strings.HasPrefix(topic, "dm:"):
		x, y, ok := dmUsers(topic)
		if !ok || (handle != x && handle != y) {
			return forbidden("not your conversation")
		}
		return nil
	}
	r, err := a.room(ctx, topic)
	if err != nil {
		return err
	}
	if r.Private {
		ok, err := a.store.IsMember(ctx, r.Name, handle)
		if err != nil {
			return err
		}
		if !ok {
			return forbidden("#" + r.Name + " is private: an admin must add you")
		}
	}
	return nil
}

// room returns a live (not archived) room, as a *realtime.Error when there
// is none.
func (a *app) room(ctx context.Context, name string) (room, error) {
	if !validRoom.MatchString(name) {
		return room{}, notFound("no such room")
	}
	rooms, err := a.rooms(ctx)
	if err != nil {
		return room{}, err
	}
	i := slices.IndexFunc(rooms, func(r room) bool { return r.Name == name })
	if i < 0 || rooms[i].Archived {
		return room{}, notFound("no such room")
	}
	return rooms[i], nil
}

// rooms reads every room through the cache: each join, message and room
// list asks. Room writes invalidate the "rooms" tag on every replica.
func (a *app) rooms(ctx context.Context) ([]room, error) {
	return cache.GetOrLoad(ctx, a.cache, "rooms", a.store.Rooms, cache.TTL(time.Minute), cache.Tags("rooms"))
}

// roomsChanged invalidates the cached rooms and tells every page.
func (a *app) roomsChanged(ctx context.Context) {
	if err := a.cache.InvalidateTags(ctx, "rooms"); err != nil {
		a.log.Warn("invalidating the rooms", "err", err)
	}
	if _, err := a.hub.Publish(ctx, lobbyTopic, event{Kind: "rooms"}); err != nil {
		a.log.Warn("announcing a room change", "err", err)
	}
}

// authorize is the hub's Authorize hook. Pages send messages through the
// "send" call (so the server checks and records them), and publish only
// ephemeral typing signals themselves.
func (a *app) authorize(ctx context.Context, id realtime.Identity, act realtime.Action) error {
	switch act.Kind {
	case realtime.ActionCall:
		return nil
	case realtime.ActionDirect:
		return forbidden("direct messages go through the dm.open and send calls")
	case realtime.ActionPublish:
		if !act.Ephemeral || act.Room == lobbyTopic || strings.HasPrefix(act.Room, "user:") {
			return forbidden("send messages with the send call")
		}
	}
	return a.canRead(ctx, id.User, act.Room)
}

// event is what the server publishes to rooms and users' topics; Kind
// says which fields are set.
type event struct {
	Kind string `json:"kind"` // msg, edit, delete, rooms, mention, dm, archived
	ID   string `json:"id,omitempty"`
	Room string `json:"room,omitempty"`
	User string `json:"user,omitempty"` // the author (msg), or who acted
	Name string `json:"name,omitempty"` // the author's display name
	Text string `json:"text,omitempty"`
	At   int64  `json:"at,omitempty"` // ms
}

// callData decodes a call's data into v.
func callData(c *realtime.Call, v any) error {
	if len(c.Data) == 0 || json.Unmarshal(c.Data, v) != nil {
		return badRequest("send a JSON object as the call's data")
	}
	return nil
}

func (a *app) caller(ctx context.Context, c *realtime.Call) (user, error) {
	u, err := a.profile(ctx, c.Conn.Identity.User)
	if err != nil {
		return u, forbidden("no such user")
	}
	if u.Banned {
		return u, forbidden("banned")
	}
	return u, nil
}

func (a *app) admin(ctx context.Context, c *realtime.Call) (user, error) {
	u, err := a.caller(ctx, c)
	if err == nil && u.Role != roleAdmin {
		err = forbidden("admins only")
	}
	return u, err
}

// roomInfo is one line of the room list.
type roomInfo struct {
	Name    string `json:"name"`
	Private bool   `json:"private,omitempty"`
	Joined  bool   `json:"joined"`
	Online  int    `json:"online"` // distinct users present, on every replica
	Unread  int    `json:"unread"` // messages after the user's read marker (at most 99)
}

// listRooms answers "rooms.list": the public rooms and the private rooms
// the caller is a member of.
func (a *app) listRooms(ctx context.Context, c *realtime.Call) (any, error) {
	me := c.Conn.Identity.User
	rooms, err := a.rooms(ctx)
	if err != nil {
		return nil, err
	}
	mine, err := a.store.UserRooms(ctx, me)
	if err != nil {
		return nil, err
	}
	marks, err := a.store.ReadMarkers(ctx, me)
	if err != nil {
		return nil, err
	}
	out := []roomInfo{}
	for _, r := range rooms {
		joined := slices.Contains(mine, r.Name)
		if r.Archived || (r.Private && !joined) {
			continue
		}
		info := roomInfo{Name: r.Name, Private: r.Private, Joined: joined}
		if info.Online, err = a.online(ctx, r.Name); err != nil {
			return nil, err
		}
		if joined {
			info.Unread = a.unread(ctx, r.Name, marks[r.Name], me)
		}
		out = append(out, info)
	}
	return out, nil
}

// online counts the distinct users present in topic.
func (a *app) online(ctx context.Context, topic string) (int, error) {
	members, err := a.hub.Presence(ctx, topic)
	if err != nil {
		return 0, err
	}
	users := map[string]bool{}
	for _, m := range members {
		users[m.User] = true
	}
	return len(users), nil
}

// unread counts the messages of others in topic after the marker, up to 99.
func (a *app) unread(ctx context.Context, topic, marker, me string) int {
	if marker == "" {
		return 0 // not tracked: joining a room sets its marker (see joinRoom)
	}
	since, err := rtkit.ParseID(marker)
	if err != nil {
		return 0
	}
	h, err := a.bp.History(ctx, topic, rtkit.HistoryOptions{Since: since, Limit: 200})
	if err != nil {
		return 0
	}
	n := 0
	for _, m := range h.Messages {
		if e, ok := serverEvent(m.Data); ok && e.Kind == "msg" && e.User != me {
			n++
		}
	}
	return min(n, 99)
}

// joinRoom answers "room.join" {room}: the caller becomes a member of a
// public room (or already is of a private one) and the room counts as
// read. The page then joins the room on the hub.
func (a *app) joinRoom(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ Room string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	me := c.Conn.Identity.User
	if err := a.canRead(ctx, me, req.Room); err != nil {
		return nil, err
	}
	if strings.Contains(req.Room, ":") {
		return nil, badRequest("join rooms only")
	}
	ok, err := a.store.IsMember(ctx, req.Room, me)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := a.store.AddMember(ctx, req.Room, me); err != nil {
			return nil, err
		}
		a.markRead(ctx, me, req.Room)
	}
	return map[string]bool{"joined": true}, nil
}

// leaveRoom answers "room.leave" {room}.
func (a *app) leaveRoom(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ Room string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if err := a.store.RemoveMember(ctx, req.Room, c.Conn.Identity.User); err != nil {
		return nil, err
	}
	return map[string]bool{"left": true}, nil
}

// markRead sets the user's marker of topic to its newest message.
func (a *app) markRead(ctx context.Context, handle, topic string) {
	h, err := a.bp.History(ctx, topic, rtkit.HistoryOptions{Limit: 1})
	if err == nil {
		pos := h.Position.String()
		if h.Position.IsZero() {
			pos = "0-0" // read, though empty: "" means not tracked
		}
		err = a.store.MarkRead(ctx, handle, topic, pos)
	}
	if err != nil {
		a.log.Warn("marking a room read", "room", topic, "err", err)
	}
}

// readRoom answers "read" {room, id}: the caller has seen up to id.
func (a *app) readRoom(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ Room, ID string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if _, err := rtkit.ParseID(req.ID); err != nil {
		return nil, badRequest("id is a message ID")
	}
	me := c.Conn.Identity.User
	if err := a.canRead(ctx, me, req.Room); err != nil {
		return nil, err
	}
	return nil, a.store.MarkRead(ctx, me, req.Room, req.ID)
}

// createRoom answers "room.create" {name, private} (admins).
func (a *app) createRoom(ctx context.Context, c *realtime.Call) (any, error) {
	u, err := a.admin(ctx, c)
	if err != nil {
		return nil, err
	}
	var req struct {
		Name    string
		Private bool
	}
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	req.Name = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(req.Name), "#"))
	if !validRoom.MatchString(req.Name) {
		return nil, badRequest(roomRule)
	}
	err = a.store.CreateRoom(ctx, room{Name: req.Name, Private: req.Private, Created: time.Now().UTC(), By: u.Handle})
	if errors.Is(err, errTaken) {
		return nil, &realtime.Error{Code: realtime.CodeBadRequest, Message: "#" + req.Name + " exists (or existed: archived rooms keep their names)"}
	}
	if err != nil {
		return nil, err
	}
	if err := a.store.AddMember(ctx, req.Name, u.Handle); err != nil {
		return nil, err
	}
	a.roomsChanged(ctx)
	return map[string]string{"name": req.Name}, nil
}

// archiveRoom answers "room.archive" {room} (admins): nobody can join or
// read it any more; pages drop it.
func (a *app) archiveRoom(ctx context.Context, c *realtime.Call) (any, error) {
	if _, err := a.admin(ctx, c); err != nil {
		return nil, err
	}
	var req struct{ Room string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	r, err := a.room(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	r.Archived = true
	if err := a.store.PutRoom(ctx, r); err != nil {
		return nil, err
	}
	if _, err := a.hub.Publish(ctx, r.Name, event{Kind: "archived", Room: r.Name}); err != nil {
		return nil, err
	}
	a.roomsChanged(ctx)
	return nil, nil
}

// roomMembers answers "room.members" {room}: members of a room the caller
// can read.
func (a *app) roomMembers(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct{ Room string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if err := a.canRead(ctx, c.Conn.Identity.User, req.Room); err != nil {
		return nil, err
	}
	return a.store.Members(ctx, req.Room)
}

// setMember answers "room.member" {room, user, member} (admins): adds a
// user to a private room, or removes them. A removed user's connections
// are closed, so that they stop receiving the room at once; their pages
// reconnect without it.
func (a *app) setMember(ctx context.Context, c *realtime.Call) (any, error) {
	if _, err := a.admin(ctx, c); err != nil {
		return nil, err
	}
	var req struct {
		Room, User string
		Member     bool
	}
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	r, err := a.room(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	if _, err := a.profile(ctx, req.User); err != nil {
		return nil, notFound("no such user")
	}
	if req.Member {
		err = a.store.AddMember(ctx, r.Name, req.User)
	} else {
		err = a.store.RemoveMember(ctx, r.Name, req.User)
	}
	if err != nil {
		return nil, err
	}
	if !req.Member && r.Private {
		// The hub has no per-room kick: close the user's connections.
		if err := a.hub.Disconnect(ctx, req.User, "removed from #"+r.Name); err != nil {
			return nil, err
		}
	}
	if _, err := a.hub.Publish(ctx, "user:"+req.User, event{Kind: "rooms"}); err != nil {
		return nil, err
	}
	return nil, nil
}
