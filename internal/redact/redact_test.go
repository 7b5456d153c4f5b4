package redact

import (
	"errors"
	"io"
	"net/url"
	"testing"

	"go.uber.org/goleak"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		`Get "http://h/ws?token=abc&room=x": dial tcp`:         `Get "http://h/ws?token=xxxxx&room=x": dial tcp`,
		"wss://ada:s3cret@h/ws?access_token=a.b.c":             "wss://ada:xxxxx@h/ws?access_token=xxxxx",
		"http://h/events?topic=a&api_key=k1&last_event_id=1-0": "http://h/events?topic=a&api_key=xxxxx&last_event_id=1-0",
		"no url here":             "no url here",
		"http://h/x?Token=T#frag": "http://h/x?Token=xxxxx#frag",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://h/?token=secret", Err: io.ErrUnexpectedEOF}
	red := Error(err)
	if red.Error() != `Get "http://h/?token=xxxxx": unexpected EOF` {
		t.Fatal(red)
	}
	if !errors.Is(red, io.ErrUnexpectedEOF) {
		t.Fatal("chain lost")
	}
	if Error(nil) != nil {
		t.Fatal("nil")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
