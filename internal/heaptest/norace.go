//go:build !race

package heaptest

// RaceEnabled: the race detector's allocator changes heap figures, so
// memory bounds are checked only without it.
const RaceEnabled = false
