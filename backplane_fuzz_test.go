package rtkit

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// encodePayload is the Go twin of publishScript's payload encoding.
func encodePayload(prev ID, msgs []*Message) string {
	var b bytes.Buffer
	b.WriteString(payloadMagic)
	if prev.IsZero() {
		b.WriteString("0-0")
	}
	b.WriteString(prev.String() + "\n")
	for _, m := range msgs {
		if m.Ephemeral() {
			b.WriteString("e" + strconv.FormatInt(m.Time.UnixMilli(), 10))
		} else {
			b.WriteString(m.ID.String())
		}
		b.WriteString(" " + strconv.Itoa(len(m.Data)) + "\n")
		b.Write(m.Data)
	}
	return b.String()
}

func FuzzDecodePayload(f *testing.F) {
	f.Add("r2 0-0\n")
	f.Add("r2 1699999999999-3\n1700000000000-0 5\nhello")
	f.Add("r2 0-0\n1700000000000-0 5\nhelloe1700000000001 3\nhi\n1700000000001-7 0\n")
	f.Add("r2 0-0\n1-1 99\nshort")
	f.Add("r2 0-0\n-1 1\nx")
	f.Add("r2 0-0\ne-5 1\nx")
	f.Add("r2 0-0\n0-0 1\nx")
	f.Add("r2 0-0\n1-1 +1\nx")
	f.Add("r2 x\n1-1 1\nx")
	f.Add("r2 1-1")
	f.Add("r1\n1-1 1\nx")
	f.Fuzz(func(t *testing.T, p string) {
		prev, msgs, err := decodePayload("t", p)
		if err != nil {
			return
		}
		prev2, again, err := decodePayload("t", encodePayload(prev, msgs))
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if prev2 != prev {
			t.Fatalf("round trip changed the previous ID: %v, then %v", prev, prev2)
		}
		if len(again) != len(msgs) {
			t.Fatalf("round trip: %d messages, then %d", len(msgs), len(again))
		}
		for i := range msgs {
			a, b := msgs[i], again[i]
			if a.ID != b.ID || !bytes.Equal(a.Data, b.Data) || !a.Time.Equal(b.Time) || a.Topic != "t" {
				t.Fatalf("round trip changed message %d: %+v vs %+v", i, a, b)
			}
		}
	})
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"", "0-0", "1-0", "1700000000000-42", "18446744073709551615-18446744073709551615", "1", "-", "1-", "-1", "+1-1", "1-+1", "a-b", "01-02", "1-2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %v, which does not round-trip: %v, %v", s, id, back, err)
		}
		text, _ := id.MarshalText()
		var u ID
		if err := u.UnmarshalText(text); err != nil || u != id {
			t.Fatalf("text round trip of %v: %v, %v", id, u, err)
		}
	})
}

func TestDecodePayload(t *testing.T) {
	msgs := []*Message{
		{ID: ID{MS: 1700000000000, Seq: 0}, Data: []byte("a\nb c"), Time: time.UnixMilli(1700000000000)},
		{Data: []byte(""), Time: time.UnixMilli(1700000000001)},
		{ID: ID{MS: 1700000000001, Seq: 3}, Data: []byte("r1\n1-1 1\nx"), Time: time.UnixMilli(1700000000001)},
	}
	prev, got, err := decodePayload("t", encodePayload(ID{MS: 1699999999999, Seq: 7}, msgs))
	if err != nil {
		t.Fatal(err)
	}
	if prev != (ID{MS: 1699999999999, Seq: 7}) {
		t.Fatalf("previous ID %v", prev)
	}
	if len(got) != 3 || got[0].ID != msgs[0].ID || string(got[2].Data) != "r1\n1-1 1\nx" || !got[1].Ephemeral() {
		t.Fatalf("decoded %+v", got)
	}
	for _, bad := range []string{"", "r2", "r2 0-0", "r2 x\n", "r1\n", "r2 0-0\n1-1", "r2 0-0\n1-1 2\nx", "r2 0-0\n0-0 1\nx", "r2 0-0\nbad 1\nx", "r2 0-0\ne 1\nx", "r2 0-0\n 1\nx"} {
		if _, _, err := decodePayload("t", bad); err == nil {
			t.Errorf("decodePayload(%q) succeeded", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]ID{"": {}, "5-6": {5, 6}, "1700000000000-0": {1700000000000, 0}} {
		got, err := ParseID(in)
		if err != nil || got != want {
			t.Errorf("ParseID(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"5", "5-", "-6", "a-1", "1-b", "+1-1", "1-+1", "99999999999999999999-1", "1-2-3"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded", bad)
		}
	}
	if (ID{1, 2}).Compare(ID{1, 3}) != -1 || (ID{2, 0}).Compare(ID{1, 9}) != 1 || (ID{1, 1}).Compare(ID{1, 1}) != 0 {
		t.Error("Compare")
	}
}
