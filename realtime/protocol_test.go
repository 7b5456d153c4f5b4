package realtime

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
)

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"op":"join","id":1,"room":"lobby"}`,
		`{"op":"join","id":1,"room":"lobby","since":"1732800000000-3"}` + "\n" + `{"op":"pub","id":2,"room":"lobby","data":{"a":[1,2]}}`,
		`{"op":"pub","room":"r","data":"x","ephemeral":true}`,
		`{"op":"direct","id":3,"to":"bob","data":null}`,
		`{"op":"call","id":4,"method":"m","data":{}}` + "\r\n\r\n",
		`{"op":"presence","id":5,"room":"r"}`,
		`{"op":"leave","id":6,"room":"r"}`,
		`{"op":"join","id":-1}`,
		`{"op":"join","id":1e3,"room":"r"}`,
		`{"op":"join","id":9007199254740993}`,
		`{"op":"join","history":-5,"room":"r"}`,
		`{"op":1}`,
		`[1,2,3]`,
		`{"op":"pub","room":"r","data":}`,
		"\xff\xfe",
		strings.Repeat(`{"op":"x"}`+"\n", 70),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		n := 0
		decodeFrame(frame, func(in *inbound, err *Error) {
			n++
			if in == nil {
				t.Fatal("nil object")
			}
			if err != nil {
				if err.Code != CodeBadRequest {
					t.Fatalf("decoder error with code %q", err.Code)
				}
				return
			}
			if in.ID > maxID {
				t.Fatalf("accepted id %d", in.ID)
			}
			switch in.Op {
			case "join", "leave", "presence":
				if in.Room == "" {
					t.Fatalf("%s without room accepted", in.Op)
				}
			case "pub":
				if in.Room == "" || !json.Valid(in.Data) {
					t.Fatalf("pub accepted without room or valid data: %+v", in)
				}
			case "direct":
				if in.To == "" || !json.Valid(in.Data) {
					t.Fatalf("direct accepted without to or valid data: %+v", in)
				}
			case "call":
				if in.Method == "" {
					t.Fatal("call without method accepted")
				}
			default:
				t.Fatalf("op %q accepted", in.Op)
			}
		})
		// One callback per non-blank line: every request is answered.
		lines := 0
		for l := range bytes.SplitSeq(frame, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines++
			}
		}
		if n != lines {
			t.Fatalf("%d callbacks for %d objects", n, lines)
		}
	})
}

func FuzzClientFrame(f *testing.F) {
	f.Add("lobby", []byte(EnvelopeMark+`{"op":"msg","from":{"user":"a","conn":"c"},"data":{"x":1}}`), true)
	f.Add("r", []byte(EnvelopeMark+`{"op":"presence","count":1,"room":"r","joins":[{"user":"u","conn":"c"}],"leaves":[]}`), false)
	f.Add("", []byte(EnvelopeMark+`{"op":"direct","from":{},"data":"hi"}`), true)
	f.Add("r", []byte(`{"op":"kick"}`), true)
	f.Add("r", []byte("{\n\"a\": \"\xff\"}"), true)
	f.Add("r", []byte(`not json at all`), true)
	f.Add("r", []byte(`{"op":"msg"}`), true)
	f.Add("r", []byte(`{"op":"msg","data":`), true)
	f.Fuzz(func(t *testing.T, room string, data []byte, persistent bool) {
		if !utf8.ValidString(room) {
			return
		}
		m := &rtkit.Message{Topic: room, Data: data, Time: time.UnixMilli(1732800000000)}
		if persistent {
			m.ID = rtkit.ID{MS: 1732800000000, Seq: 2}
		}
		frame := clientFrame(room, m)
		// Envelopes from the hub are valid JSON and must stay so; foreign
		// payloads, valid or not, must come out as valid JSON.
		if op, _ := envelopeOp(data); op == nil || json.Valid(data[len(EnvelopeMark):]) {
			if !json.Valid(frame) || bytes.ContainsAny(frame, "\r\n") {
				t.Fatalf("invalid frame %q from %q", frame, data)
			}
		}
		if !utf8.Valid(frame) {
			t.Fatalf("frame %q from %q is not UTF-8", frame, data)
		}
	})
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "ctl\x00\x1f\n\r\t", "é😀", "bad\xffutf8", "js\u2028\u2029"} {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Errorf("round trip %q -> %s -> %q", s, b, back)
		}
		if strings.ContainsRune(string(b), '\u2028') {
			t.Errorf("U+2028 not escaped in %s", b)
		}
	}
}
