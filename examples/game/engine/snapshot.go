package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Entity is one thing in a game's state, as the game encodes it: a
// player, a piece of food, the match's clock. Data is a JSON value; two
// entities with the same ID are equal when their Data bytes are.
type Entity struct {
	ID   string
	Data []byte
}

// Snapshot is the whole state of a match after a tick: its entities,
// sorted by ID. Snapshots are immutable once made: treat them as read-only.
type Snapshot struct {
	Tick     uint64
	Entities []Entity
}

// Delta turns the snapshot of tick Base into the one of tick Tick: Set
// holds the entities added or changed (sorted by ID), Del the IDs removed
// (sorted). A delta with Base 0 is a full snapshot.
type Delta struct {
	Tick, Base uint64
	Set        []Entity
	Del        []string
}

// Errors of deltas.
var (
	// ErrBaseMismatch: a delta was applied to a snapshot other than its
	// base.
	ErrBaseMismatch = errors.New("engine: delta applied to the wrong base snapshot")
	// ErrBadDelta: encoded bytes are not a valid delta.
	ErrBadDelta = errors.New("engine: malformed delta")
)

// Get returns the data of the entity with id, or nil.
func (s *Snapshot) Get(id string) []byte {
	if i, ok := slices.BinarySearchFunc(s.Entities, id, cmpEntityID); ok {
		return s.Entities[i].Data
	}
	return nil
}

func cmpEntityID(e Entity, id string) int { return strings.Compare(e.ID, id) }

// Diff returns the delta from base to next. A nil base gives a full
// snapshot (Base 0).
func Diff(base, next *Snapshot) Delta {
	d := Delta{Tick: next.Tick}
	if base == nil {
		d.Set = next.Entities
		return d
	}
	d.Base = base.Tick
	a, b := base.Entities, next.Entities
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].ID < b[j].ID):
			d.Del = append(d.Del, a[i].ID)
			i++
		case i == len(a) || b[j].ID < a[i].ID:
			d.Set = append(d.Set, b[j])
			j++
		default:
			if !bytes.Equal(a[i].Data, b[j].Data) {
				d.Set = append(d.Set, b[j])
			}
			i++
			j++
		}
	}
	return d
}

// Apply returns the snapshot d leads to from s. It fails with
// [ErrBaseMismatch] unless d is a full snapshot or s is d's base. s is
// not modified; the result shares the entities' Data with s and d.
func (s *Snapshot) Apply(d Delta) (*Snapshot, error) {
	if d.Base == 0 {
		return &Snapshot{Tick: d.Tick, Entities: slices.Clone(d.Set)}, nil
	}
	if s == nil || s.Tick != d.Base {
		return nil, fmt.Errorf("%w: delta %d→%d, snapshot %d", ErrBaseMismatch, d.Base, d.Tick, tickOf(s))
	}
	out := make([]Entity, 0, len(s.Entities)+len(d.Set))
	a, set := s.Entities, d.Set
	i, j := 0, 0
	for i < len(a) || j < len(set) {
		switch {
		case j == len(set) || (i < len(a) && a[i].ID < set[j].ID):
			if _, gone := slices.BinarySearch(d.Del, a[i].ID); !gone {
				out = append(out, a[i])
			}
			i++
		case i == len(a) || set[j].ID < a[i].ID:
			out = append(out, set[j])
			j++
		default:
			out = append(out, set[j])
			i++
			j++
		}
	}
	return &Snapshot{Tick: d.Tick, Entities: out}, nil
}

func tickOf(s *Snapshot) uint64 {
	if s == nil {
		return 0
	}
	return s.Tick
}

// MarshalJSON encodes the snapshot as {"t":tick,"e":{id:data,...}}, with
// the entities in ID order, so that equal snapshots encode to equal bytes.
func (s *Snapshot) MarshalJSON() ([]byte, error) {
	b := append([]byte(`{"t":`), strconv.FormatUint(s.Tick, 10)...)
	b = append(b, `,"e":`...)
	b = appendEntities(b, s.Entities)
	return append(b, '}'), nil
}

// AppendJSON appends the delta's wire form to b:
//
//	{"t":tick,"b":base,"s":{id:data,...},"x":[id,...]}
//
// "s" and "x" are left out when empty; "b" is 0 for a full snapshot.
func (d *Delta) AppendJSON(b []byte) []byte {
	b = append(b, `{"t":`...)
	b = strconv.AppendUint(b, d.Tick, 10)
	b = append(b, `,"b":`...)
	b = strconv.AppendUint(b, d.Base, 10)
	if len(d.Set) > 0 {
		b = append(b, `,"s":`...)
		b = appendEntities(b, d.Set)
	}
	if len(d.Del) > 0 {
		b = append(b, `,"x":[`...)
		for i, id := range d.Del {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendEntities(b []byte, es []Entity) []byte {
	b = append(b, '{')
	for i, e := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, e.ID)
		b = append(b, ':')
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string; IDs are short and plain, so the
// common case skips encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// MaxEntities bounds the entities a decoded delta may carry.
const MaxEntities = 4096

// DecodeDelta parses a delta's wire form (see [Delta.AppendJSON]). Bytes
// that are not one (bad JSON, a missing or zero tick, a base not before
// the tick, an empty ID, an ID both set and deleted, more than
// [MaxEntities] entries, entity data that is not JSON) give an error
// wrapping [ErrBadDelta].
func DecodeDelta(data []byte) (Delta, error) {
	var w struct {
		T *uint64                    `json:"t"`
		B uint64                     `json:"b"`
		S map[string]json.RawMessage `json:"s"`
		X []string                   `json:"x"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return Delta{}, fmt.Errorf("%w: %v", ErrBadDelta, err)
	}
	switch {
	case w.T == nil || *w.T == 0:
		return Delta{}, fmt.Errorf("%w: no tick", ErrBadDelta)
	case w.B >= *w.T:
		return Delta{}, fmt.Errorf("%w: base %d not before tick %d", ErrBadDelta, w.B, *w.T)
	case len(w.S)+len(w.X) > MaxEntities:
		return Delta{}, fmt.Errorf("%w: more than %d entities", ErrBadDelta, MaxEntities)
	case w.B == 0 && len(w.X) > 0:
		return Delta{}, fmt.Errorf("%w: a full snapshot deletes nothing", ErrBadDelta)
	}
	d := Delta{Tick: *w.T, Base: w.B, Del: w.X}
	for id, raw := range w.S {
		if id == "" || raw == nil {
			return Delta{}, fmt.Errorf("%w: empty entity", ErrBadDelta)
		}
		d.Set = append(d.Set, Entity{ID: id, Data: raw})
	}
	slices.SortFunc(d.Set, func(a, b Entity) int { return strings.Compare(a.ID, b.ID) })
	slices.Sort(d.Del)
	for i, id := range d.Del {
		if id == "" || (i > 0 && d.Del[i-1] == id) {
			return Delta{}, fmt.Errorf("%w: empty or repeated deleted ID", ErrBadDelta)
		}
		if _, ok := w.S[id]; ok {
			return Delta{}, fmt.Errorf("%w: %q both set and deleted", ErrBadDelta, id)
		}
	}
	return d, nil
}
