package realtime

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
)

// What the hub publishes on the backplane is [EnvelopeMark] followed by a
// JSON object that starts with its op, so that every node turns it into a
// client frame by splicing in the message ID and the time, without
// decoding it. It names its room, so that it stands on its own wherever it
// goes (an SSE stream of several rooms, say):
//
//	\x1ehub\x1f{"op":"msg","room":"lobby","from":{"user":"ada","conn":"c1"},"data":...}
//	\x1ehub\x1f{"op":"presence","count":2,"room":"lobby","joins":[{"user":"ada","conn":"c1"}],"leaves":[]}
//	\x1ehub\x1f{"op":"direct","from":{...},"data":...}      (on a user's inbox topic)
//	\x1ehub\x1f{"op":"kick","reason":"..."}                 (on a user's inbox topic)
//
// Anything else published to a room's topic by other code (a server
// process using the backplane directly, say) reaches members as a "msg"
// whose data is the payload, or the payload as a JSON string when it is
// not JSON — also a payload that looks like a client frame ({"op":"kick"}):
// only the mark makes an envelope.

// EnvelopeMark starts every payload the hub publishes on its backplane
// (record separator, "hub", unit separator). Clients' data cannot produce
// it: it is always inside the JSON that follows, where control characters
// are escaped. Server code that publishes on the backplane directly must
// not start a payload with it.
const EnvelopeMark = "\x1ehub\x1f"

var (
	opMsg      = []byte(`{"op":"msg"`)
	opPresence = []byte(`{"op":"presence"`)
	opDirect   = []byte(`{"op":"direct"`)
	opKick     = []byte(`{"op":"kick"`)
)

// Sender identifies who published a message; empty for the server.
type Sender struct {
	User string `json:"user,omitempty"`
	Conn string `json:"conn,omitempty"`
}

// Member is one connection present in a room.
type Member struct {
	User string            `json:"user"`
	Conn string            `json:"conn"`
	Meta map[string]string `json:"meta,omitempty"`
}

// appendSender appends ,"from":{...}, or nothing for the server (no
// sender): clients read a missing "from" as {}.
func appendSender(b []byte, s Sender) []byte {
	if s.User == "" && s.Conn == "" {
		return b
	}
	b = append(b, `,"from":{"user":`...)
	b = appendString(b, s.User)
	b = appendField(b, "conn", s.Conn)
	return append(b, '}')
}

// msgEnvelope encodes a room message (or, with no room, a direct message)
// for the backplane.
func msgEnvelope(op []byte, room string, from Sender, data []byte) []byte {
	b := make([]byte, 0, len(EnvelopeMark)+len(op)+len(room)+len(data)+64)
	b = append(b, EnvelopeMark...)
	b = append(b, op...)
	if room != "" {
		b = appendField(b, "room", room)
	}
	b = appendSender(b, from)
	b = appendRaw(b, "data", data)
	return append(b, '}')
}

// presenceEnvelope encodes one presence event of room for the backplane:
// the room's member count and, for a diff, the connections that joined
// (with their members) and left. A count event (diff false) carries
// neither list. The count comes first so that every node reads it from
// the frame without decoding it (presenceFrameCount).
func presenceEnvelope(room string, count int, diff bool, joins, leaves []Member) []byte {
	b := make([]byte, 0, 64+len(room)+80*(len(joins)+len(leaves)))
	b = append(b, EnvelopeMark...)
	b = append(b, opPresence...)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = appendField(b, "room", room)
	if diff {
		b = appendMembers(b, "joins", joins, true)
		b = appendMembers(b, "leaves", leaves, false)
	}
	return append(b, '}')
}

// appendMembers appends ,"name":[...] with each member's user and
// connection, and its meta when withMeta is set.
func appendMembers(b []byte, name string, ms []Member, withMeta bool) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":[`...)
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"user":`...)
		b = appendString(b, m.User)
		b = appendField(b, "conn", m.Conn)
		if withMeta && len(m.Meta) > 0 {
			mj, _ := json.Marshal(m.Meta)
			b = appendRaw(b, "meta", mj)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// presenceFrameCount reads the count of a presence event's client frame
// (as presenceEnvelope lays it out). It reports false for any other
// frame.
func presenceFrameCount(frame []byte) (int, bool) {
	const prefix = `{"op":"presence","count":`
	rest, ok := bytes.CutPrefix(frame, []byte(prefix))
	if !ok {
		return 0, false
	}
	n, i := 0, 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		n = n*10 + int(rest[i]-'0')
	}
	return n, i > 0
}

func kickEnvelope(reason string) []byte {
	b := append([]byte(EnvelopeMark), opKick...)
	b = appendField(b, "reason", reason)
	return append(b, '}')
}

// envelopeOp returns the op of a hub envelope and what follows it (",..."
// or "}"), or nils for foreign data.
func envelopeOp(data []byte) (op, rest []byte) {
	d, ok := bytes.CutPrefix(data, []byte(EnvelopeMark))
	if !ok {
		return nil, nil
	}
	for _, op := range [][]byte{opMsg, opPresence, opDirect, opKick} {
		if bytes.HasPrefix(d, op) && len(d) > len(op) && (d[len(op)] == ',' || d[len(op)] == '}') {
			return op, d[len(op):]
		}
	}
	return nil, nil
}

// clientFrame turns a backplane message into the frame members receive:
// the envelope with the message ID (or, for an ephemeral message, the
// time) spliced in after its op.
// Foreign data becomes a "msg" of room whose data is the payload.
func clientFrame(room string, m *rtkit.Message) []byte {
	op, rest := envelopeOp(m.Data) // rest: the envelope after its op
	if op == nil {
		op = opMsg
	}
	b := make([]byte, 0, len(m.Data)+len(room)+64)
	b = append(b, op...)
	if rest == nil && room != "" {
		b = appendField(b, "room", room)
	}
	switch {
	case bytes.Equal(op, opPresence):
		// Presence events are state, not messages: no ID, no time.
	case m.Ephemeral():
		// No ID to take the time from.
		b = append(b, `,"ephemeral":true,"time":`...)
		b = strconv.AppendInt(b, m.Time.UnixMilli(), 10)
	default:
		// The time is the ID's milliseconds: clients take it from there.
		b = append(b, `,"id":"`...)
		b, _ = m.ID.AppendText(b)
		b = append(b, '"')
	}
	if rest != nil {
		if !utf8.Valid(rest) {
			// Hub envelopes hold checked data; this guards the rule that
			// every text frame is UTF-8 against anything else.
			rest = bytes.ToValidUTF8(rest, replacementChar)
		}
		return append(b, rest...)
	}
	return append(appendForeign(b, m.Data), '}')
}

var replacementChar = []byte("\uFFFD")

// appendForeign appends ,"data": with a payload other code published: JSON
// as it is (compacted when it spans lines, so that it stays one line of
// the frame; invalid UTF-8 in its strings replaced by U+FFFD), anything
// else as a JSON string.
func appendForeign(b, data []byte) []byte {
	return appendForeignValue(append(b, `,"data":`...), data)
}

// appendForeignValue appends the JSON value appendForeign makes of data.
func appendForeignValue(b, data []byte) []byte {
	if !json.Valid(data) {
		return appendString(b, string(data))
	}
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, replacementChar)
	}
	if bytes.ContainsAny(data, "\r\n") {
		buf := bytes.NewBuffer(b)
		_ = json.Compact(buf, data)
		return buf.Bytes()
	}
	return append(b, data...)
}

// Message is a room message as History returns it.
type Message struct {
	Room string          `json:"room"`
	ID   rtkit.ID        `json:"id"`
	From Sender          `json:"from"`
	Data json.RawMessage `json:"data"`
	// Time is when the message was published, to the millisecond.
	Time int64 `json:"time"`
}

// DecodeMessage decodes a room message as a backplane subscriber receives
// it: one the hub published (a member's or [Hub.Publish]'s), or a payload
// other code published to the room's topic (From empty, Data the payload).
// It reports false for anything else on the topic (presence events). Code
// that subscribes to a room's topic on the backplane uses it instead of
// parsing payloads: the hub's envelope format is internal.
func DecodeMessage(m *rtkit.Message) (Message, bool) {
	return decodeMessage(m.Topic, m)
}

// decodeMessage decodes a room message from its client frame form.
func decodeMessage(room string, m *rtkit.Message) (Message, bool) {
	var f struct {
		Op   string          `json:"op"`
		From Sender          `json:"from"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(clientFrame(room, m), &f); err != nil || f.Op != "msg" {
		return Message{}, false
	}
	return Message{Room: room, ID: m.ID, From: f.From, Data: f.Data, Time: m.Time.UnixMilli()}, true
}
