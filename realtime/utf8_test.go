package realtime

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

// Invalid UTF-8 from a client is refused at the edge: a browser closes a
// text frame that is not UTF-8, and a stored one would break the room for
// every member (reconnect, recover it again, close again...).
func TestInvalidUTF8IsRefused(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer})
	ada := dialRaw(t, url, as("ada"))
	ada.welcome()
	ada.send(map[string]any{"op": "join", "id": 1, "room": "r"})
	require.Equal(t, "ok", ada.reply(1)["op"])
	ada.sendText("{\"op\":\"pub\",\"id\":2,\"room\":\"r\",\"data\":\"bad \xff\xfe\"}\n" +
		`{"op":"pub","id":3,"room":"r","data":"good"}`)
	bad := ada.reply(2)
	require.Equal(t, "error", bad["op"])
	require.Equal(t, CodeBadRequest, bad["code"])
	require.Equal(t, "ok", ada.reply(3)["op"])
	msg := ada.until("msg")
	require.Equal(t, "good", msg["data"], "the refused object must not reach the room")
}

// What other code publishes reaches clients as valid UTF-8 and one line
// per object, whatever its bytes: through Hub.Publish or straight on the
// backplane (the helper's reader fails the test on a non-UTF-8 frame or a
// line that is not JSON).
func TestOutboundFramesAreUTF8JSONLines(t *testing.T) {
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	h, url := testHub(t, Options{Authenticate: bearer, Backplane: bp})
	ada := dialRaw(t, url, as("ada"))
	ada.welcome()
	ada.send(map[string]any{"op": "join", "id": 1, "room": "r"})
	require.Equal(t, "ok", ada.reply(1)["op"])
	ctx := context.Background()

	_, err := h.Publish(ctx, "r", json.RawMessage("\"raw \xff\""))
	require.NoError(t, err)
	require.Equal(t, "raw \uFFFD", ada.until("msg")["data"])

	for _, payload := range []string{"\xc3\x28 not json", "{\"a\":\"\xff\"}", "{\n\"a\": [1,\n2]\n}"} {
		_, err = bp.Publish(ctx, "r", []byte(payload), rtkit.PublishOptions{})
		require.NoError(t, err)
		m := ada.until("msg")
		require.NotNil(t, m["data"], "payload %q", payload)
	}
	hist, err := h.History(ctx, "r", 10)
	require.NoError(t, err)
	require.JSONEq(t, `"raw \uFFFD"`, string(hist[0].Data))
}
