package sse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Event
		want string
	}{
		{"plain", Event{Data: []byte("hello")}, "data: hello\n\n"},
		{"all fields", Event{ID: "7", Type: "update", Data: []byte("x"), Retry: 1500 * time.Millisecond}, "id: 7\nevent: update\ndata: x\nretry: 1500\n\n"},
		{"LF", Event{Data: []byte("a\nb")}, "data: a\ndata: b\n\n"},
		{"CRLF", Event{Data: []byte("a\r\nb")}, "data: a\ndata: b\n\n"},
		{"lone CR", Event{Data: []byte("a\rb")}, "data: a\ndata: b\n\n"},
		{"CR CR LF", Event{Data: []byte("a\r\r\nb")}, "data: a\ndata\ndata: b\n\n"},
		{"trailing newline", Event{Data: []byte("a\n")}, "data: a\ndata\n\n"},
		{"empty", Event{Data: nil}, "data\n\n"},
		{"leading space kept", Event{Data: []byte(" a")}, "data:  a\n\n"},
		{"colon inside", Event{Data: []byte("k: v")}, "data: k: v\n\n"},
		{"sub-millisecond retry", Event{Data: []byte("x"), Retry: time.Microsecond}, "data: x\nretry: 1\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendEvent(nil, tc.e)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
	for _, bad := range []Event{{ID: "a\nb"}, {ID: "a\rb"}, {ID: "a\x00b"}, {Type: "x\ny"}} {
		_, err := AppendEvent(nil, bad)
		assert.ErrorIs(t, err, ErrInvalidEvent, "%+v", bad)
	}
	assert.Equal(t, ": hi there\n\n", string(appendComment(nil, "hi\nthere")))
}

func TestParser(t *testing.T) {
	stream := "\xEF\xBB\xBF" + // BOM
		": comment\n" +
		"data: one\n\n" +
		"event: custom\r\nid: 1\r\ndata: two\r\ndata:three\r\n\r\n" +
		"data: cr\rdata: only\r\r" +
		"id: 2\n\n" + // sets the id, dispatches nothing... but reports it
		"data\n\n" + // empty data: not dispatched
		"data\ndata\n\n" + // one newline
		"retry: 250\ndata: r\n\n" +
		"retry: 2x\nid: bad\x00id\nfield without colon\ndata: keep\n\n" +
		"data: unterminated"
	p := NewParser(strings.NewReader(stream), 0)
	var got []Event
	for {
		e, err := p.Next()
		if err != nil {
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
			break
		}
		got = append(got, e)
	}
	want := []Event{
		{Data: []byte("one")},
		{ID: "1", Type: "custom", Data: []byte("two\nthree")},
		{ID: "1", Data: []byte("cr\nonly")},
		{ID: "2"},
		{ID: "2", Data: []byte("\n")},
		{ID: "2", Data: []byte("r"), Retry: 250 * time.Millisecond},
		{ID: "2", Data: []byte("keep")},
	}
	assert.Equal(t, want, got)
}

func TestParserLargeEvents(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20) // far over 64 KiB in one line
	enc, err := AppendEvent(nil, Event{ID: "9", Data: big})
	require.NoError(t, err)
	p := NewParser(bytes.NewReader(enc), 2<<20)
	e, err := p.Next()
	require.NoError(t, err)
	assert.Equal(t, big, e.Data)

	p = NewParser(bytes.NewReader(enc), 1<<10)
	_, err = p.Next()
	assert.ErrorIs(t, err, ErrEventTooLarge)
}

func FuzzParser(f *testing.F) {
	f.Add([]byte("data: a\n\n"))
	f.Add([]byte("id: 1\r\nevent: e\r\ndata: x\r\ndata: y\r\n\r\n"))
	f.Add([]byte("\xEF\xBB\xBFdata: bom\r\r"))
	f.Add([]byte(": c\nretry: 10\nid\ndata\n\n"))
	f.Add([]byte("data:" + strings.Repeat("z", 5000) + "\n\n"))
	f.Add([]byte("id: \x00\ndata: nul\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := NewParser(bytes.NewReader(in), 1<<16)
		for range 10000 {
			e, err := p.Next()
			if err != nil {
				return
			}
			if strings.ContainsAny(e.ID, "\r\n\x00") {
				t.Fatalf("id with a line break or NUL: %q", e.ID)
			}
			if e.Data == nil {
				continue
			}
			// What was parsed survives encoding and parsing again.
			enc, err := AppendEvent(nil, Event{ID: e.ID, Type: e.Type, Data: e.Data})
			if err != nil {
				if strings.ContainsAny(e.Type, "\r\n") {
					t.Fatalf("parsed a type with a line break: %q", e.Type)
				}
				continue
			}
			again, err := NewParser(bytes.NewReader(enc), 1<<17).Next()
			if err != nil || again.ID != e.ID || again.Type != e.Type || !bytes.Equal(again.Data, e.Data) {
				t.Fatalf("round trip of %+v gave %+v, %v", e, again, err)
			}
		}
	})
}
