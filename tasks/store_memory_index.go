package tasks

import "slices"

// memIndex maps task IDs to tasks. The runner's IDs are UUIDv7s, ordered
// by time, and tasks mostly come and go in about that order; so such IDs
// are kept by their 16 bytes in sorted spans of a few milliseconds each:
// the entries of the tasks enqueued or finished about now share a few
// cache lines, where a map of all the IDs costs a cache miss or two per
// operation in a large table (and reads the scattered ID strings). Other
// IDs, and the rare UUIDv7 that would go far from the end of its span, go
// in a plain map.
type memIndex struct {
	v7    map[int64]*memSpan // by time >> memSpanShift ms
	other map[string]*memTask
}

// memSpanShift makes a span 8ms long.
const memSpanShift = 3

// memSpan holds the UUIDv7 IDs of a span, sorted. Removed tasks leave a
// nil entry until the span is compacted or dropped.
type memSpan struct {
	ids  []memIDTask
	live int
}

// memID is a UUIDv7 as two big-endian halves.
type memID struct{ hi, lo uint64 }

// memIDTask is an entry of a memSpan.
type memIDTask struct {
	memID
	t *memTask
}

func (x *memIndex) span(id memID) int64 { return int64(id.hi>>16) >> memSpanShift }

// find returns where id is or would be in sp.
func (sp *memSpan) find(id memID) (int, bool) {
	ids := sp.ids
	if n := len(ids); n == 0 || ids[n-1].less(id) {
		return n, false // the usual case: a new ID, after the others
	}
	i, j := 0, len(ids)
	for i < j {
		h := int(uint(i+j) >> 1)
		if ids[h].less(id) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i, i < len(ids) && ids[i].memID == id
}

func (a memID) less(b memID) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// get returns the task with the ID.
func (x *memIndex) get(id string) *memTask {
	if k, ok := uuidV7(id); ok {
		return x.getV7(k, id)
	}
	return x.other[id]
}

func (x *memIndex) getV7(k memID, id string) *memTask {
	if sp := x.v7[x.span(k)]; sp != nil {
		if i, ok := sp.find(k); ok && sp.ids[i].t != nil {
			return sp.ids[i].t
		}
	}
	if len(x.other) == 0 {
		return nil
	}
	return x.other[id]
}

// add adds t under its ID unless the ID is taken, and reports whether it
// did.
func (x *memIndex) add(t *memTask) bool {
	k, ok := uuidV7(t.ID)
	if !ok {
		return x.addOther(t)
	}
	if x.getV7(k, t.ID) != nil {
		return false
	}
	t.key = k
	span := x.span(k)
	sp := x.v7[span]
	if sp == nil {
		// Sized like the previous span, to save growing it.
		sp = &memSpan{}
		if prev := x.v7[span-1]; prev != nil {
			sp.ids = make([]memIDTask, 0, len(prev.ids))
		}
		x.v7[span] = sp
	}
	i, found := sp.find(k)
	switch {
	case found:
		sp.ids[i].t = t
	case i < len(sp.ids)-memSpanShuffle:
		t.key = memID{}
		return x.addOther(t) // don't move many IDs
	default:
		sp.ids = slices.Insert(sp.ids, i, memIDTask{k, t})
	}
	sp.live++
	return true
}

// memSpanShuffle is how far from the end of its span an ID may go: IDs
// come about in order, and two runners' about now.
const memSpanShuffle = 256

func (x *memIndex) addOther(t *memTask) bool {
	if x.other[t.ID] != nil {
		return false
	}
	x.other[t.ID] = t
	return true
}

func (x *memIndex) remove(t *memTask) {
	if t.key == (memID{}) {
		delete(x.other, t.ID)
		return
	}
	span := x.span(t.key)
	sp := x.v7[span]
	i, _ := sp.find(t.key)
	sp.ids[i].t = nil
	sp.live--
	switch {
	case sp.live == 0:
		delete(x.v7, span)
	case sp.live*4 < len(sp.ids) && len(sp.ids) >= 64:
		sp.ids = slices.DeleteFunc(sp.ids, func(e memIDTask) bool { return e.t == nil })
	}
}

// uuidV7 returns the halves of a UUIDv7 in canonical lowercase form, so
// that each value stands for one ID string. The zero value isn't one.
func uuidV7(id string) (k memID, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[14] != '7' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	var bad byte
	for j, i := range [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34} {
		h, l := unhex[id[i]], unhex[id[i+1]]
		bad |= h | l
		if j < 8 {
			k.hi = k.hi<<8 | uint64(h<<4|l)
		} else {
			k.lo = k.lo<<8 | uint64(h<<4|l)
		}
	}
	return k, bad&0xf0 == 0
}

// unhex maps the lowercase hex digits to their values, other bytes to 0xff.
const unhex = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
