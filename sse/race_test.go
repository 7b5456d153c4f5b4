//go:build race

package sse

// raceEnabled: the race detector's allocator changes heap figures, so
// memory bounds are checked only without it.
const raceEnabled = true
