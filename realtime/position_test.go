package realtime

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// PROTOCOL.md's recipe, followed literally by a client that has never
// received a direct message: store the first welcome's inbox, reconnect
// with it as inbox_since, and get the directs sent while away. The
// position of an empty inbox (and of an empty room) is "0-0", echoed as
// such.
func TestEmptyPositionsAreZeroZero(t *testing.T) {
	h, u := testHub(t, Options{Authenticate: bearer})
	ada := dialRaw(t, u, as("ada"))
	inbox, _ := ada.welcome()["inbox"].(string)
	require.Equal(t, "0-0", inbox)
	ada.send(map[string]any{"op": "join", "id": 1, "room": "empty"})
	require.Equal(t, "0-0", ada.reply(1)["position"])
	_ = ada.ws.CloseNow()
	waitFor(t, "ada gone", func() bool { return h.Stats().Connections == 0 })

	bob := dialRaw(t, u, as("bob"))
	bob.welcome()
	for i, text := range []string{"one", "two"} {
		bob.send(map[string]any{"op": "direct", "id": i + 1, "to": "ada", "data": text})
		require.Equal(t, "ok", bob.reply(float64(i + 1))["op"])
	}
	back := dialRaw(t, u+"?inbox_since="+url.QueryEscape(inbox), as("ada"))
	w := back.welcome()
	require.Equal(t, "0-0", w["inbox"], "the position resumed from is echoed")
	require.Equal(t, true, w["recovered"])
	require.Equal(t, "one", back.until("direct")["data"])
	require.Equal(t, "two", back.until("direct")["data"])
}
