package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
)

// CompactSubprotocol is the WebSocket subprotocol a client lists in
// Sec-WebSocket-Protocol to receive room messages ("msg" events) as JSON
// arrays instead of objects (see PROTOCOL.md, "Compact frames"). The hub
// offers it to every client; the Go client and rtkit.js ask for it.
const CompactSubprotocol = "rtkit.compact"

// wantsCompact reports whether c negotiated the compact subprotocol.
func (c *conn) wantsCompact() bool {
	return c.ws != nil && strings.EqualFold(c.ws.Subprotocol(), CompactSubprotocol)
}

// compactFrame is the array form of a room message for a member that
// negotiated the compact subprotocol:
//
//	["room","1732800000000-4",DATA]                 server-published
//	["room","1732800000000-4",DATA,"user","conn"]   with a sender
//	["room",1732800000001,DATA,"user","conn"]       ephemeral: the time
//
// A payload other code published to the room's topic is DATA as
// appendForeignValue writes it. It returns nil for anything that is not a room
// message (presence, kick, direct envelopes), and for a message envelope
// it does not recognise: the member then gets the object frame, which a
// compact client reads as well.
func compactFrame(room string, m *rtkit.Message) []byte {
	op, rest := envelopeOp(m.Data)
	if op == nil {
		b := make([]byte, 0, len(m.Data)+len(room)+32)
		b = appendCompactHead(appendString(append(b, '['), room), m)
		b = appendForeignValue(append(b, ','), m.Data)
		return append(b, ']')
	}
	if !bytes.Equal(op, opMsg) {
		return nil
	}
	// rest is what msgEnvelope wrote after the op:
	// ,"room":S[,"from":{"user":S,"conn":S}],"data":DATA}
	roomJSON, rest, ok := cutStringField(rest, `,"room":`)
	if !ok || len(rest) == 0 || rest[len(rest)-1] != '}' {
		return nil
	}
	var user, connID []byte
	if bytes.HasPrefix(rest, []byte(`,"from":`)) {
		if user, rest, ok = cutStringField(rest, `,"from":{"user":`); !ok {
			return nil
		}
		if connID, rest, ok = cutStringField(rest, `,"conn":`); !ok || len(rest) == 0 || rest[0] != '}' {
			return nil
		}
		rest = rest[1:]
	}
	data, ok := bytes.CutPrefix(rest[:len(rest)-1], []byte(`,"data":`))
	if !ok || len(data) == 0 {
		return nil
	}
	b := make([]byte, 0, len(m.Data)+24)
	b = append(append(b, '['), roomJSON...)
	b = appendCompactHead(b, m)
	b = append(append(b, ','), data...)
	if user != nil {
		b = append(append(b, ','), user...)
		b = append(append(b, ','), connID...)
	}
	b = append(b, ']')
	if !utf8.Valid(b) {
		// Hub envelopes hold checked data; this guards the rule that
		// every text frame is UTF-8 against anything else.
		b = bytes.ToValidUTF8(b, replacementChar)
	}
	return b
}

// appendCompactHead appends the second element of m's array, with the
// comma before it: the ID as a string, or for an ephemeral message the
// time in Unix milliseconds as a number.
func appendCompactHead(b []byte, m *rtkit.Message) []byte {
	b = append(b, ',')
	if m.Ephemeral() {
		return strconv.AppendInt(b, m.Time.UnixMilli(), 10)
	}
	b = append(b, '"')
	b, _ = m.ID.AppendText(b)
	return append(b, '"')
}

// cutStringField cuts prefix and the JSON string after it (quotes
// included, escapes left as they are) from b.
func cutStringField(b []byte, prefix string) (str, rest []byte, ok bool) {
	b, ok = bytes.CutPrefix(b, []byte(prefix))
	if !ok || len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[:i+1], b[i+1:], true
		}
	}
	return nil, nil, false
}

// errCompact is what decodeCompact reports for an array it cannot read.
var errCompact = errors.New("realtime: malformed compact msg")

// decodeCompact reads the array form of a room message (see
// compactFrame) into the wireEvent its object form decodes to. Elements
// after the fifth are ignored.
func decodeCompact(line []byte) (wireEvent, error) {
	var a []json.RawMessage
	if err := json.Unmarshal(line, &a); err != nil {
		return wireEvent{}, err
	}
	if len(a) != 3 && len(a) < 5 {
		return wireEvent{}, errCompact
	}
	w := wireEvent{Op: "msg", Data: a[2]}
	if err := json.Unmarshal(a[0], &w.Room); err != nil || a[0][0] != '"' {
		return wireEvent{}, errCompact
	}
	switch a[1][0] {
	case '"':
		w.ID = a[1]
	default:
		if a[1][0] == 'n' || json.Unmarshal(a[1], &w.Time) != nil {
			return wireEvent{}, errCompact
		}
		w.Ephemeral = true
	}
	if len(a) >= 5 {
		if a[3][0] != '"' || a[4][0] != '"' {
			return wireEvent{}, errCompact
		}
		if json.Unmarshal(a[3], &w.From.User) != nil || json.Unmarshal(a[4], &w.From.Conn) != nil {
			return wireEvent{}, errCompact
		}
	}
	return w, nil
}
