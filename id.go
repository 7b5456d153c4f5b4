package rtkit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidID is returned by [ParseID] for text that is not a message ID.
var ErrInvalidID = errors.New("rtkit: invalid message id")

// ID identifies a message within its topic. IDs are strictly increasing
// within a topic and have the form of Redis stream IDs, "<ms>-<seq>":
// the publish time in Unix milliseconds and a sequence number that orders
// messages published in the same millisecond. Both backplanes use the same
// form, so an ID survives a switch from memory to Redis as text.
//
// The zero ID means "none": the position before any message, and the ID of
// ephemeral messages, which are not kept in history.
type ID struct {
	MS  uint64
	Seq uint64
}

// ParseID parses an ID in its "<ms>-<seq>" text form. The empty string
// parses as the zero ID. Anything else returns an error wrapping
// [ErrInvalidID].
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, nil
	}
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("%w: %q", ErrInvalidID, truncate(s, 64))
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil || ms[0] == '+' || seq[0] == '+' {
		return ID{}, fmt.Errorf("%w: %q", ErrInvalidID, truncate(s, 64))
	}
	return ID{MS: a, Seq: b}, nil
}

// String returns the "<ms>-<seq>" form, or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	b, _ := id.AppendText(make([]byte, 0, 32))
	return string(b)
}

// AppendText appends the "<ms>-<seq>" form of id to b. It implements
// [encoding.TextAppender].
func (id ID) AppendText(b []byte) ([]byte, error) {
	if id.IsZero() {
		return b, nil
	}
	b = strconv.AppendUint(b, id.MS, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10), nil
}

// MarshalText implements [encoding.TextMarshaler].
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil) }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseID].
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.MS == 0 && id.Seq == 0 }

// Compare returns -1, 0 or +1 as id is before, equal to or after other.
func (id ID) Compare(other ID) int {
	switch {
	case id.MS < other.MS:
		return -1
	case id.MS > other.MS:
		return 1
	case id.Seq < other.Seq:
		return -1
	case id.Seq > other.Seq:
		return 1
	}
	return 0
}

// next returns the smallest ID after id.
func (id ID) next() ID {
	if id.Seq == ^uint64(0) {
		return ID{MS: id.MS + 1}
	}
	return ID{MS: id.MS, Seq: id.Seq + 1}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
