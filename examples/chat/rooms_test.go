package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A private room refuses a non-member everywhere: the membership call,
// the hub's join and presence, history, sending, and the SSE stream.
func TestPrivateRoomRefusesNonMembers(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	adminTok, bobTok := register(t, base, "ana"), register(t, base, "bob")
	admin, bob := dial(t, base, adminTok), dial(t, base, bobTok)
	call(t, admin, "room.create", map[string]any{"name": "secret", "private": true}, nil)
	enter(t, admin, "secret")
	say(t, admin, "secret", "the plan")

	ctx := context.Background()
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "room.join", map[string]string{"room": "secret"}))
	_, err := bob.Join(ctx, "secret", realtime.JoinOptions{History: 10})
	var e *realtime.Error
	require.ErrorAs(t, err, &e, "a WebSocket join is refused")
	assert.Equal(t, realtime.CodeForbidden, e.Code)
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "history", map[string]string{"room": "secret"}))
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "send", map[string]string{"room": "secret", "text": "hi"}))
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "room.members", map[string]string{"room": "secret"}))
	status, _ := get(t, base, "/events?topic=secret", bobTok)
	assert.Equal(t, http.StatusForbidden, status, "the SSE stream is refused")
	var rooms []roomInfo
	call(t, bob, "rooms.list", nil, &rooms)
	for _, r := range rooms {
		assert.NotEqual(t, "secret", r.Name, "a private room is not listed to non-members")
	}

	// Added by the admin, bob reads it all; removed, he is cut off.
	call(t, admin, "room.member", map[string]any{"room": "secret", "user": "bob", "member": true}, nil)
	bob2 := dial(t, base, bobTok)
	enter(t, bob2, "secret")
	var page struct{ Messages []event }
	call(t, bob2, "history", map[string]string{"room": "secret"}, &page)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, "the plan", page.Messages[0].Text)
	call(t, admin, "room.member", map[string]any{"room": "secret", "user": "bob", "member": false}, nil)
	waitOp(t, bob2, "disconnected")
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob2, "history", map[string]string{"room": "secret"}))

	// An archived room is gone for everyone.
	call(t, admin, "room.archive", map[string]string{"room": "secret"}, nil)
	assert.Equal(t, realtime.CodeNotFound, callErr(t, admin, "send", map[string]string{"room": "secret", "text": "hi"}))
}

// waitOp waits for an event with op on c.
func waitOp(t *testing.T, c *realtime.Client, op string) realtime.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Op == op {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", op)
		}
	}
}

func TestRoomListCountsAndUnread(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	ana, bob := dial(t, base, register(t, base, "ana")), dial(t, base, register(t, base, "bob"))
	enter(t, ana, "general")
	enter(t, bob, "general")
	for range 3 {
		say(t, ana, "general", "news")
	}
	var rooms []roomInfo
	call(t, bob, "rooms.list", nil, &rooms)
	assert.Equal(t, []roomInfo{{Name: "general", Joined: true, Online: 2, Unread: 3}, {Name: "random"}}, rooms)
	id := say(t, ana, "general", "more")
	call(t, bob, "read", map[string]string{"room": "general", "id": id}, nil)
	call(t, bob, "rooms.list", nil, &rooms)
	assert.Equal(t, 0, rooms[0].Unread)

	// Leaving: no longer joined, no longer present.
	call(t, bob, "room.leave", map[string]string{"room": "general"}, nil)
	require.NoError(t, bob.Leave(context.Background(), "general"))
	call(t, ana, "rooms.list", nil, &rooms)
	assert.Equal(t, roomInfo{Name: "general", Joined: true, Online: 1}, rooms[0])
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "send", map[string]string{"room": "general", "text": "hi"}))
}

func TestDirectMessagesReachOnlyTheirRecipient(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	ana, bob, eve := dial(t, base, register(t, base, "ana")), dial(t, base, register(t, base, "bob")), dial(t, base, register(t, base, "eve"))
	for _, c := range []*realtime.Client{bob, eve} {
		_, err := c.Join(context.Background(), "user:"+map[*realtime.Client]string{bob: "bob", eve: "eve"}[c], realtime.JoinOptions{})
		require.NoError(t, err)
	}
	var dm struct{ Room string }
	call(t, ana, "dm.open", map[string]string{"user": "bob"}, &dm)
	assert.Equal(t, "dm:ana:bob", dm.Room)
	say(t, ana, dm.Room, "just for you")

	n := nextEvent(t, bob, "user:bob", "dm")
	assert.Equal(t, "just for you", n.Text)
	assert.Equal(t, "ana", n.User)
	var convs []struct{ Room, User string }
	call(t, bob, "dm.list", nil, &convs)
	require.Len(t, convs, 1)
	assert.Equal(t, "ana", convs[0].User)

	// Eve can neither join, read nor write the conversation, nor bob's
	// notifications.
	_, err := eve.Join(context.Background(), dm.Room, realtime.JoinOptions{History: 10})
	require.Error(t, err)
	_, err = eve.Join(context.Background(), "user:bob", realtime.JoinOptions{History: 10})
	require.Error(t, err)
	assert.Equal(t, realtime.CodeForbidden, callErr(t, eve, "history", map[string]string{"room": dm.Room}))
	assert.Equal(t, realtime.CodeForbidden, callErr(t, eve, "send", map[string]string{"room": dm.Room, "text": "x"}))
	var none []any
	call(t, eve, "dm.list", nil, &none)
	assert.Empty(t, none)
	select {
	case e := <-eve.Events():
		if e.Op == "msg" {
			t.Fatalf("eve received %s", e.Data)
		}
	default:
	}
}

func TestEditDeleteAndPaging(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	admin, ana, bob := dial(t, base, register(t, base, "root")), dial(t, base, register(t, base, "ana")), dial(t, base, register(t, base, "bob"))
	for _, c := range []*realtime.Client{admin, ana, bob} {
		enter(t, c, "general")
	}
	var ids []string
	for i := range 120 {
		ids = append(ids, say(t, ana, "general", fmt.Sprint("message ", i)))
	}

	// Edits are the author's; deletions the author's or an admin's; both
	// reach everyone live.
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "msg.edit", map[string]string{"room": "general", "id": ids[5], "text": "bob was here"}))
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "msg.delete", map[string]string{"room": "general", "id": ids[5]}))
	call(t, ana, "msg.edit", map[string]string{"room": "general", "id": ids[5], "text": "message 5, edited"}, nil)
	assert.Equal(t, ids[5], nextEvent(t, bob, "general", "edit").ID)
	call(t, admin, "msg.delete", map[string]string{"room": "general", "id": ids[119]}, nil)
	assert.Equal(t, ids[119], nextEvent(t, bob, "general", "delete").ID)
	assert.Equal(t, realtime.CodeNotFound, callErr(t, ana, "msg.edit", map[string]string{"room": "general", "id": ids[119], "text": "x"}))

	// Paging back from the newest: 50, 50, then the rest, with the edit
	// applied and the deleted message gone.
	type page struct {
		Messages []event
		More     bool
	}
	var p1, p2, p3 page
	call(t, bob, "history", map[string]any{"room": "general"}, &p1)
	require.Len(t, p1.Messages, 50)
	assert.True(t, p1.More)
	assert.Equal(t, ids[118], p1.Messages[49].ID)
	assert.Equal(t, ids[69], p1.Messages[0].ID)
	call(t, bob, "history", map[string]any{"room": "general", "before": p1.Messages[0].ID}, &p2)
	require.Len(t, p2.Messages, 50)
	assert.Equal(t, ids[19], p2.Messages[0].ID)
	call(t, bob, "history", map[string]any{"room": "general", "before": p2.Messages[0].ID}, &p3)
	require.Len(t, p3.Messages, 19)
	assert.False(t, p3.More)
	assert.Equal(t, "message 5, edited", p3.Messages[5].Text)
	assert.Equal(t, "message 0", p3.Messages[0].Text)
}

func TestAdminBansAndDisconnects(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	admin := dial(t, base, register(t, base, "root"))
	bobTok := register(t, base, "bob")
	bob := dial(t, base, bobTok)
	assert.Equal(t, realtime.CodeForbidden, callErr(t, bob, "admin.ban", map[string]any{"user": "root", "banned": true}))

	call(t, admin, "admin.disconnect", map[string]string{"user": "bob"}, nil)
	waitOp(t, bob, "disconnected")

	// Banned: connections close, the session and sign-in are refused.
	bob2 := dial(t, base, bobTok)
	call(t, admin, "admin.ban", map[string]any{"user": "bob", "banned": true}, nil)
	waitOp(t, bob2, "disconnected")
	status, _ := get(t, base, "/api/session", bobTok)
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _ = get(t, base, "/ws", bobTok)
	assert.Equal(t, http.StatusUnauthorized, status)
	resp := post(t, base, "/api/login", "", map[string]string{"handle": "bob", "password": "password-bob"}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	var users []adminUser
	call(t, admin, "admin.users", map[string]string{}, &users)
	require.Len(t, users, 2)
	assert.True(t, users[0].Banned)
	assert.Equal(t, "bob@example.com", users[0].Email, "admins see addresses")

	call(t, admin, "admin.ban", map[string]any{"user": "bob", "banned": false}, nil)
	resp = post(t, base, "/api/login", "", map[string]string{"handle": "bob", "password": "password-bob"}, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
