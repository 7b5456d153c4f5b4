package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Error codes carried by error replies. They are stable: clients branch on
// them.
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeBadRequest   = "bad_request"
	CodeRateLimited  = "rate_limited"
	CodeNotFound     = "not_found"
	CodeInternal     = "internal"
)

// Close codes the hub uses besides the standard ones (1000 normal, 1001
// going away on Shutdown, 1003 for binary frames, 1009 for a message over
// the size limit, 1011 internal error).
const (
	// CloseKicked: the server disconnected the user ([Hub.Disconnect]).
	CloseKicked websocket.StatusCode = 4003
	// CloseSlowConsumer: the connection's send queue overflowed because it
	// did not read fast enough. Reconnect and rejoin with since.
	CloseSlowConsumer websocket.StatusCode = 4008
	// CloseRateLimited: the client kept sending after rate_limited replies.
	CloseRateLimited websocket.StatusCode = 4029
)

// Error is an error reply: a stable machine Code and a human Message.
// Authorize hooks and call handlers may return one to choose the reply;
// the Go client returns one for every error reply.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "realtime: " + e.Code + ": " + e.Message }

// errorf returns an *Error with a formatted message.
func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// inbound is one client object. Unknown fields are ignored so that newer
// clients work with older servers.
type inbound struct {
	Op        string          `json:"op"`
	ID        uint64          `json:"id,omitempty"`
	Room      string          `json:"room,omitempty"`
	Since     string          `json:"since,omitempty"`
	History   int             `json:"history,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Ephemeral bool            `json:"ephemeral,omitempty"`
	To        string          `json:"to,omitempty"`
	Method    string          `json:"method,omitempty"`
	// Presence false on a join: no presence events for that room.
	Presence *bool `json:"presence,omitempty"`
}

// maxObjectsPerFrame bounds the objects one client frame may carry.
const maxObjectsPerFrame = 64

// decodeFrame splits a client frame into its newline-separated JSON
// objects and decodes each. It calls fn for every non-blank line, with the
// decoded object or the reason it is invalid (then in.ID holds the id if
// one could be read, so the error reply can be correlated).
func decodeFrame(frame []byte, fn func(in *inbound, err *Error)) {
	n := 0
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if n++; n > maxObjectsPerFrame {
			// Not run, but answered: every request gets its reply.
			fn(&inbound{ID: probeID(line)}, errorf(CodeBadRequest, "more than %d objects in one frame", maxObjectsPerFrame))
			continue
		}
		if !utf8.Valid(line) {
			// Refused at the edge: browsers close a text frame that is not
			// UTF-8, so such data must never reach a room.
			fn(&inbound{ID: probeID(line)}, errorf(CodeBadRequest, "object is not valid UTF-8"))
			continue
		}
		var in inbound
		if err := json.Unmarshal(line, &in); err != nil {
			fn(&inbound{ID: probeID(line)}, errorf(CodeBadRequest, "invalid JSON object: %s", jsonErrorText(err)))
			continue
		}
		if err := in.validate(); err != nil {
			fn(&in, err)
			continue
		}
		fn(&in, nil)
	}
}

// probeID reads the id of an object that is not handled, for its error
// reply (0 if there is none to read).
func probeID(line []byte) uint64 {
	var probe struct {
		ID uint64 `json:"id"`
	}
	_ = json.Unmarshal(line, &probe)
	if probe.ID > maxID {
		return 0
	}
	return probe.ID
}

func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	}
	return "malformed"
}

// maxID is the largest id a JavaScript number holds exactly.
const maxID = 1<<53 - 1

// validate checks the fields an op needs.
func (in *inbound) validate() *Error {
	if in.ID > maxID {
		return errorf(CodeBadRequest, "id above 2^53-1")
	}
	need := func(field, v string) *Error {
		if v == "" {
			return errorf(CodeBadRequest, "%s needs %q", in.Op, field)
		}
		return nil
	}
	switch in.Op {
	case "join":
		if in.History < 0 {
			return errorf(CodeBadRequest, "history must not be negative")
		}
		return need("room", in.Room)
	case "leave", "presence":
		return need("room", in.Room)
	case "pub":
		if err := need("room", in.Room); err != nil {
			return err
		}
		if len(in.Data) == 0 {
			return errorf(CodeBadRequest, "pub needs \"data\"")
		}
	case "direct":
		if err := need("to", in.To); err != nil {
			return err
		}
		if len(in.Data) == 0 {
			return errorf(CodeBadRequest, "direct needs \"data\"")
		}
	case "call":
		return need("method", in.Method)
	case "":
		return errorf(CodeBadRequest, "missing \"op\"")
	default:
		return errorf(CodeBadRequest, "unknown op %q", truncate(in.Op, 32))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is also valid JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// frame builders. Each returns a complete server object without the
// trailing newline; the writer joins objects with '\n'.

func okFrame(id uint64, fields func(b []byte) []byte) []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"op":"ok","id":`...)
	b = strconv.AppendUint(b, id, 10)
	if fields != nil {
		b = fields(b)
	}
	return append(b, '}')
}

func errorFrame(id uint64, e *Error) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"op":"error"`...)
	if id != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, id, 10)
	}
	b = append(b, `,"code":`...)
	b = appendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	return append(b, '}')
}

// appendField appends ,"name":<json string>.
func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendRaw appends ,"name":<raw json>.
func appendRaw(b []byte, name string, raw []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return append(b, raw...)
}

func appendBool(b []byte, name string, v bool) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendBool(b, v)
}

func appendInt(b []byte, name string, v int) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, int64(v), 10)
}
