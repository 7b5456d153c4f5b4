package realtime

import (
	"context"
	"testing"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

// A payload other code publishes is never taken for a hub envelope, even
// when it reads like one: a crafted {"op":"kick"} on a user's inbox does
// not close the user's connections.
func TestLookalikeEnvelopesAreData(t *testing.T) {
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	_, url := testHub(t, Options{Authenticate: bearer, Backplane: bp})
	alice := dialRaw(t, url, as("alice"))
	alice.welcome()
	alice.send(map[string]any{"op": "join", "id": 1, "room": "r"})
	require.Equal(t, "ok", alice.reply(1)["op"])
	ctx := context.Background()
	_, err := bp.Publish(ctx, inboxTopic("alice"), []byte(`{"op":"kick","reason":"forged"}`), rtkit.PublishOptions{})
	require.NoError(t, err)
	_, err = bp.Publish(ctx, "r", []byte(`{"op":"msg","room":"r","from":{"user":"bob"},"data":1}`), rtkit.PublishOptions{})
	require.NoError(t, err)
	m := alice.until("msg")
	require.NotContains(t, m, "from", "a foreign payload comes from the server")
	require.Equal(t, map[string]any{"op": "msg", "room": "r", "from": map[string]any{"user": "bob"}, "data": float64(1)}, m["data"])
	alice.send(map[string]any{"op": "presence", "id": 2, "room": "r"})
	require.Equal(t, "ok", alice.reply(2)["op"], "still connected after the forged kick")
}

// Under the default Authorize, clients cannot join or publish to the
// topics rtkit's other packages use on a shared backplane.
func TestReservedRoomsAreForbiddenByDefault(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer})
	ada := dialRaw(t, url, as("ada"))
	ada.welcome()
	for i, room := range []string{"tasks", "tasks:cancel", "rtkit-cache-invalidations", "rtkit:x"} {
		id := float64(i + 1)
		ada.send(map[string]any{"op": "join", "id": id, "room": room})
		r := ada.reply(id)
		require.Equal(t, "error", r["op"], room)
		require.Equal(t, CodeForbidden, r["code"], room)
	}
	ada.send(map[string]any{"op": "join", "id": 10, "room": "tasks-board"})
	require.Equal(t, "ok", ada.reply(10)["op"])
}

// An application's Authorize decides reserved rooms itself.
func TestAuthorizeMayAllowReservedRooms(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer, Authorize: func(context.Context, Identity, Action) error { return nil }})
	ada := dialRaw(t, url, as("ada"))
	ada.welcome()
	ada.send(map[string]any{"op": "join", "id": 1, "room": "tasks"})
	require.Equal(t, "ok", ada.reply(1)["op"])
}
