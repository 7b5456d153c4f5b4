package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// A client that keeps sending faster than its rate, even with some
// objects allowed in between (64-object frames every 20 ms at 50/s), is
// closed with 4029 once more than 3 × InboundBurst objects were refused
// within 10 seconds; and every reply the hub produced before the close reaches
// it: each published message's ok arrives.
func TestSustainedRefusalClosesWithEveryReply(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: as("spammer")})
	require.NoError(t, err)
	defer ws.CloseNow()
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"op":"join","id":1,"room":"r"}`)))
	oks, refused := make(chan int, 1), make(chan int, 1)
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		nOK, nRefused := 0, 0
		defer func() { oks <- nOK; refused <- nRefused }()
		for {
			_, frame, err := ws.Read(ctx)
			if err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
			for line := range strings.SplitSeq(string(frame), "\n") {
				var obj map[string]any
				_ = json.Unmarshal([]byte(line), &obj)
				switch {
				case obj["op"] == "ok" && obj["msg"] != nil:
					nOK++
				case obj["code"] == CodeRateLimited:
					nRefused++
				}
			}
		}
	}()
	id := 2
	var code websocket.StatusCode = -1
	for frames := 0; frames < 250 && code == -1; frames++ {
		var b strings.Builder
		for range 64 {
			fmt.Fprintf(&b, `{"op":"pub","id":%d,"room":"r","data":%d}`+"\n", id, id)
			id++
		}
		if ws.Write(ctx, websocket.MessageText, []byte(b.String())) != nil {
			break
		}
		select {
		case code = <-closed:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code == -1 {
		select {
		case code = <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("never closed although it kept sending while refused")
		}
	}
	require.Equal(t, CloseRateLimited, code)
	gotOK, gotRefused := <-oks, <-refused
	waitFor(t, "the connection's end", func() bool { return h.Stats().Connections == 0 })
	require.Equal(t, int(h.Stats().Published), gotOK, "every publish's ok arrives before the close")
	require.Positive(t, gotRefused)
}
