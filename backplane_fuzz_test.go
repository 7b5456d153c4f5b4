package rtkit

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// encodePayload is the Go twin of publishScript's payload encoding.
func encodePayload(msgs []*Message) string {
	var b bytes.Buffer
	b.WriteString(payloadMagic)
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
	f.Add("r1\n")
	f.Add("r1\n1700000000000-0 5\nhello")
	f.Add("r1\n1700000000000-0 5\nhelloe1700000000001 3\nhi\n1700000000001-7 0\n")
	f.Add("r1\n1-1 99\nshort")
	f.Add("r1\n-1 1\nx")
	f.Add("r1\ne-5 1\nx")
	f.Add("r1\n0-0 1\nx")
	f.Add("r1\n1-1 +1\nx")
	f.Add("r2\n1-1 1\nx")
	f.Fuzz(func(t *testing.T, p string) {
		msgs, err := decodePayload("t", p)
		if err != nil {
			return
		}
		again, err := decodePayload("t", encodePayload(msgs))
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
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
	got, err := decodePayload("t", encodePayload(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != msgs[0].ID || string(got[2].Data) != "r1\n1-1 1\nx" || !got[1].Ephemeral() {
		t.Fatalf("decoded %+v", got)
	}
	for _, bad := range []string{"", "r1", "x1\n", "r1\n1-1", "r1\n1-1 2\nx", "r1\n0-0 1\nx", "r1\nbad 1\nx", "r1\ne 1\nx", "r1\n 1\nx"} {
		if _, err := decodePayload("t", bad); err == nil {
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
