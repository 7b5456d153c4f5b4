package main

import (
	"errors"
	"testing"

	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/require"
)

func TestParseInputRefuses(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `{}`, `{"m":"m1","s":1,"d":0}`, `{"m":"m1","p":0,"s":0,"d":0}`,
		`{"m":"m1","p":0,"s":1,"d":4}`, `{"m":"m1","p":0,"s":1,"d":-1}`, `{"m":"m1","p":0,"s":1,"d":0,"x":5,"y":5}`,
		`{"m":"m1","p":0,"s":1,"d":0}{}`, `{"m":"m1","p":0,"s":4294967295,"d":0}`, `{"m":"m1","p":0,"s":1,"d":0,"t":9007199254740993}`,
	} {
		_, err := parseInput([]byte(in))
		var re *realtime.Error
		require.True(t, errors.As(err, &re) && re.Code == realtime.CodeBadRequest, "%q: %v", in, err)
	}
	in, err := parseInput([]byte(`{"m":"m1","p":3,"s":9,"t":120,"d":2}`))
	require.NoError(t, err)
	require.Equal(t, 3, *in.Slot)
}

// FuzzParseInput: whatever a client sends, parseInput returns a checked
// input or a bad_request, never a panic.
func FuzzParseInput(f *testing.F) {
	for _, s := range []string{`{"m":"m1","p":0,"s":1,"t":5,"d":1}`, `{"m":"m1","p":0,"s":1,"d":0,"x":5}`, `{"d":"up"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := parseInput(data)
		if err != nil {
			var re *realtime.Error
			require.True(t, errors.As(err, &re) && re.Code == realtime.CodeBadRequest)
			return
		}
		require.True(t, in.Dir.Valid())
		require.NotZero(t, in.Seq)
		require.NotEmpty(t, in.Match)
		require.NotNil(t, in.Slot)
	})
}
