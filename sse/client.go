package sse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/rtkit/rtkit/internal/redact"
)

// ErrStreamRefused is wrapped by Subscribe's error when the server refuses
// the stream for good (any status but 200 other than 429 and 5xx, or a
// content type other than text/event-stream), as EventSource does.
var ErrStreamRefused = errors.New("sse: stream refused")

// ClientOptions configure [Subscribe]. The zero value reconnects after
// the server's retry hint (default 1s) with backoff up to 30s.
type ClientOptions struct {
	// HTTPClient makes the requests. Default: http.DefaultClient (whose
	// lack of timeout suits long streams).
	HTTPClient *http.Client
	// Header is added to every request (Authorization, say).
	Header http.Header
	// LastEventID resumes a stream: it is sent as Last-Event-ID on the
	// first request; later requests send the last id received.
	LastEventID string
	// MaxBackoff caps the delay between failed attempts. Default 30s.
	MaxBackoff time.Duration
	// MaxEventSize bounds one event (all its data lines). Default 16 MiB.
	MaxEventSize int
	// Logger receives reconnection errors. Default slog.Default().
	// Credentials in the URL (the values of query parameters such as
	// token, access_token or api_key, and a userinfo password) are
	// replaced by "xxxxx" in every error and log line.
	Logger *slog.Logger
}

// Subscribe streams events from url to fn until ctx ends, reconnecting
// like a browser's EventSource: after the server's retry delay (with
// backoff while attempts fail), sending the last event id received as
// Last-Event-ID, so that the server resumes without a gap. fn runs on
// Subscribe's goroutine, one event at a time; an error from fn ends
// Subscribe with that error. Subscribe returns ctx's error when ctx ends,
// or an error wrapping [ErrStreamRefused].
func Subscribe(ctx context.Context, url string, opts ClientOptions, fn func(Event) error) error {
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	st := &clientState{lastID: opts.LastEventID, retry: time.Second}
	for failures := 0; ; {
		got, err := st.connect(ctx, url, opts, fn)
		var fatal fatalError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &fatal):
			return fatal.err
		}
		if got {
			failures = 0
		} else {
			failures++
		}
		delay := st.retry
		if failures > 1 {
			delay = min(st.retry<<min(failures-1, 10), opts.MaxBackoff)
		}
		delay = delay/2 + rand.N(delay/2+1)
		if err != nil {
			opts.Logger.Debug("sse: stream ended; reconnecting", "url", redact.String(url), "err", err, "in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

type clientState struct {
	lastID string
	retry  time.Duration
}

// fatalError ends Subscribe.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }

// connect runs one connection; got reports whether it received anything.
func (st *clientState) connect(ctx context.Context, url string, opts ClientOptions, fn func(Event) error) (got bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, fatalError{redact.Error(fmt.Errorf("sse: %w", err))}
	}
	for k, vs := range opts.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if st.lastID != "" {
		req.Header.Set("Last-Event-ID", st.lastID)
	}
	resp, err := opts.HTTPClient.Do(req)
	if err != nil {
		// The URL may carry a token: never in an error or a log line.
		return false, redact.Error(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return false, fmt.Errorf("sse: HTTP %d", resp.StatusCode)
	default:
		return false, fatalError{fmt.Errorf("%w: HTTP %d", ErrStreamRefused, resp.StatusCode)}
	}
	if ct := resp.Header.Get("Content-Type"); !bytes.HasPrefix([]byte(ct), []byte("text/event-stream")) {
		return false, fatalError{fmt.Errorf("%w: content type %q", ErrStreamRefused, ct)}
	}
	p := NewParser(resp.Body, opts.MaxEventSize)
	defer func() {
		if r := p.Retry(); r > 0 {
			st.retry = r
		}
	}()
	for {
		e, err := p.Next()
		if err != nil {
			return got, err
		}
		got = true
		st.lastID = p.LastEventID()
		if e.Retry > 0 {
			st.retry = e.Retry
		}
		if e.Data == nil {
			continue // a retry or id without data: nothing to dispatch
		}
		if err := fn(e); err != nil {
			return got, fatalError{err}
		}
	}
}

// ErrEventTooLarge is returned by Parser.Next for an event over the
// parser's size limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Parser reads events from an event stream, following the WHATWG
// algorithm: lines end with CR, LF or CRLF; a leading BOM is skipped;
// comment lines are ignored; data lines join with LF; an id with NUL is
// ignored; retry takes digits only; a blank line dispatches the event.
// Lines may be of any length, up to the event size limit.
type Parser struct {
	r       *bufio.Reader
	max     int
	lastID  string
	retry   time.Duration
	started bool
	skipLF  bool // the previous line ended with CR: a following LF is part of it
}

// NewParser returns a parser reading r, with events of at most maxEvent
// bytes (16 MiB if maxEvent <= 0).
func NewParser(r io.Reader, maxEvent int) *Parser {
	if maxEvent <= 0 {
		maxEvent = 16 << 20
	}
	return &Parser{r: bufio.NewReaderSize(r, 32<<10), max: maxEvent}
}

// LastEventID returns the last event id the stream set (it persists across
// events, as the spec says).
func (p *Parser) LastEventID() string { return p.lastID }

// Retry returns the last reconnection delay the stream set (a retry field
// takes effect when it is read, even if no event follows), or zero.
func (p *Parser) Retry() time.Duration { return p.retry }

// Next returns the next dispatched event. An event whose data is empty is
// not dispatched, but its id and retry fields still take effect: Next then
// returns an Event with nil Data and the Retry (so that a client applies
// it). At the end of the stream it returns io.EOF (an event not yet ended
// by a blank line is discarded, as the spec says).
func (p *Parser) Next() (Event, error) {
	var (
		e     Event
		data  []byte
		lines int // data lines
		size  int
		typ   string
		idSet bool
	)
	for {
		line, err := p.readLine(p.max - size)
		if err != nil {
			return Event{}, err
		}
		size += len(line)
		if len(line) == 0 {
			// Dispatch, unless the data buffer is empty (no data line, or
			// a single empty one).
			if lines == 0 || (lines == 1 && len(data) == 0) {
				if idSet || e.Retry > 0 {
					return Event{ID: p.lastID, Retry: e.Retry}, nil
				}
				typ, data, lines = "", nil, 0
				continue
			}
			if data == nil {
				data = []byte{}
			}
			e.ID, e.Type, e.Data = p.lastID, typ, data
			return e, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if lines > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
			lines++
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID = string(value)
				idSet = true
			}
		case "retry":
			if ms, ok := digits(value); ok {
				e.Retry = time.Duration(ms) * time.Millisecond
				p.retry = e.Retry
			}
		}
	}
}

func digits(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 12 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// readLine returns the next line without its terminator (CR, LF or CRLF),
// refusing lines longer than limit.
func (p *Parser) readLine(limit int) ([]byte, error) {
	var line []byte
	for {
		b, err := p.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if p.skipLF {
			p.skipLF = false
			if b == '\n' {
				continue
			}
		}
		if !p.started {
			p.started = true
			if b == 0xEF {
				// A UTF-8 BOM at the very start is skipped.
				if bom, err := p.r.Peek(2); err == nil && bom[0] == 0xBB && bom[1] == 0xBF {
					_, _ = p.r.Discard(2)
					continue
				}
			}
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			p.skipLF = true
			return line, nil
		}
		if len(line) >= limit {
			return nil, ErrEventTooLarge
		}
		// Take the rest of the buffered run in one go.
		line = append(line, b)
		if n := p.r.Buffered(); n > 0 {
			chunk, _ := p.r.Peek(n)
			if i := bytes.IndexAny(chunk, "\r\n"); i >= 0 {
				chunk = chunk[:i]
			}
			if len(line)+len(chunk) > limit {
				return nil, ErrEventTooLarge
			}
			line = append(line, chunk...)
			_, _ = p.r.Discard(len(chunk))
		}
	}
}
