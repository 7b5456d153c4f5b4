package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// An entry as stored: a small versioned envelope around the encoded value,
// so that expiry, negative caching, early refresh and tag checks work the
// same on every store. Layout (big endian):
//
//	byte    format version (1)
//	byte    codec ID
//	byte    flags (1: not found)
//	int64   soft expiry, unix ms: fresh until then
//	int64   hard expiry, unix ms: may be served stale until then
//	uint32  load duration, µs (for early refresh)
//	uvarint number of tags, then per tag: uvarint version
//	...     the encoded value
const formatVersion = 1

const flagNotFound = 1

// errCorrupt marks bytes that are not an entry of this format.
var errCorrupt = errors.New("cache: corrupt or unknown entry format")

type entry struct {
	codec    byte
	notFound bool
	soft     time.Time
	hard     time.Time
	loadDur  time.Duration
	tagVers  []int64
	value    []byte
}

func (e *entry) encode() []byte {
	b := make([]byte, 0, 32+len(e.tagVers)*4+len(e.value))
	b = append(b, formatVersion, e.codec, 0)
	if e.notFound {
		b[2] = flagNotFound
	}
	b = binary.BigEndian.AppendUint64(b, uint64(e.soft.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.hard.UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, uint32(min(e.loadDur.Microseconds(), 1<<32-1)))
	b = binary.AppendUvarint(b, uint64(len(e.tagVers)))
	for _, v := range e.tagVers {
		b = binary.AppendVarint(b, v)
	}
	return append(b, e.value...)
}

func decodeEntry(b []byte) (entry, error) {
	const head = 3 + 8 + 8 + 4
	if len(b) < head+1 || b[0] != formatVersion || b[2]&^flagNotFound != 0 {
		return entry{}, errCorrupt
	}
	e := entry{
		codec:    b[1],
		notFound: b[2]&flagNotFound != 0,
		soft:     time.UnixMilli(int64(binary.BigEndian.Uint64(b[3:]))),
		hard:     time.UnixMilli(int64(binary.BigEndian.Uint64(b[11:]))),
		loadDur:  time.Duration(binary.BigEndian.Uint32(b[19:])) * time.Microsecond,
	}
	rest := b[head:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > 64 {
		return entry{}, errCorrupt
	}
	rest = rest[k:]
	e.tagVers = make([]int64, n)
	for i := range e.tagVers {
		v, k := binary.Varint(rest)
		if k <= 0 {
			return entry{}, errCorrupt
		}
		e.tagVers[i], rest = v, rest[k:]
	}
	if e.hard.Before(e.soft) {
		return entry{}, fmt.Errorf("%w: hard expiry before soft expiry", errCorrupt)
	}
	e.value = rest
	return e, nil
}
