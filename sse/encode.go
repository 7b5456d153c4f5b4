package sse

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one server-sent event.
type Event struct {
	// ID is the event's id field. The broker sets it (to the positions of
	// the stream's topics); Publish ignores it. The Go client reports the
	// id it received.
	ID string
	// Type is the event field: the type a page listens to with
	// addEventListener. Empty means "message" (onmessage).
	Type string
	// Data is the payload: UTF-8 text (the event-stream format is UTF-8;
	// Publish and AppendEvent refuse anything else), newlines included: it
	// is split into data lines and joined again by the client. (EventSource
	// does not dispatch an event whose data is empty.)
	Data []byte
	// Retry, if positive, tells the client how long to wait before
	// reconnecting (sent as a retry field, in milliseconds).
	Retry time.Duration
}

// ErrInvalidEvent is wrapped by the errors of Publish and AppendEvent for
// fields the format cannot carry.
var ErrInvalidEvent = errors.New("sse: invalid event")

// checkField refuses what a field value cannot hold: a line break ends the
// field, NUL makes browsers ignore an id, and the stream is UTF-8.
func checkField(name, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%w: %s contains CR, LF or NUL", ErrInvalidEvent, name)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEvent, name)
	}
	return nil
}

// checkData refuses data that is not UTF-8.
func checkData(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: data is not valid UTF-8", ErrInvalidEvent)
	}
	return nil
}

// AppendEvent appends e in the event-stream format: an id field (if any),
// an event field (if any), the data split on CR, LF and CRLF into data
// fields, a retry field (if any), and the blank line that dispatches the
// event. It returns an error wrapping [ErrInvalidEvent] for an ID or type
// with a line break or NUL, or any field (data included) that is not valid
// UTF-8.
func AppendEvent(b []byte, e Event) ([]byte, error) {
	if err := checkField("id", e.ID); err != nil {
		return b, err
	}
	if err := checkField("event type", e.Type); err != nil {
		return b, err
	}
	if err := checkData(e.Data); err != nil {
		return b, err
	}
	if e.ID != "" {
		b = appendField(b, "id", e.ID)
	}
	b = appendBody(b, e.Type, e.Data)
	if e.Retry > 0 {
		b = appendRetry(b, e.Retry)
	}
	return append(b, '\n'), nil
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, name...)
	b = append(b, ':', ' ')
	b = append(b, v...)
	return append(b, '\n')
}

func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, max(d.Milliseconds(), 1), 10)
	return append(b, '\n')
}

// appendBody appends the event and data fields of an event, without the
// id and without the final blank line: the part every subscriber of a
// topic shares.
func appendBody(b []byte, typ string, data []byte) []byte {
	if typ != "" {
		b = appendField(b, "event", typ)
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		b = appendData(b, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return appendData(b, data)
}

func appendData(b, line []byte) []byte {
	if len(line) == 0 {
		return append(b, "data\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, line...)
	return append(b, '\n')
}

// appendComment appends a comment line (and the blank line after it, so
// that proxies pass it on promptly).
func appendComment(b []byte, text string) []byte {
	b = append(b, ':')
	if text != "" {
		b = append(b, ' ')
		b = append(b, strings.NewReplacer("\r", " ", "\n", " ").Replace(text)...)
	}
	return append(b, '\n', '\n')
}
