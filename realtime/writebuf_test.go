package realtime

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A writer joining objects takes the smallest pooled buffer that holds
// them: the buffers that writers hold, and that the pools keep, scale with
// the bytes written, not with the writers woken (the 64 KiB buffer every
// joined frame once took left hundreds of MB in the pool after a large
// room filled).
func TestWriteBufSized(t *testing.T) {
	require.Equal(t, maxWriteFrame, minWriteBuf<<(writeBufClasses-1))
	for _, n := range []int{1, 100, minWriteBuf, minWriteBuf + 1, 3000, 4096, 4097, 40000, maxWriteFrame - 1, maxWriteFrame} {
		bp, pool := getWriteBuf(n)
		c := cap(*bp)
		require.GreaterOrEqual(t, c, n, "n=%d", n)
		require.True(t, c == minWriteBuf || c < 2*n, "n=%d: a %d-byte buffer", n, c)
		*bp = append((*bp)[:0], 'x')
		pool.Put(bp)
		// The pool a buffer goes back to gives buffers of its size.
		bp2, pool2 := getWriteBuf(n)
		require.Same(t, pool, pool2)
		require.Equal(t, c, cap(*bp2))
		pool2.Put(bp2)
	}
}
