//go:build race

package realtime

// raceEnabled: the race detector's allocator changes heap figures, so
// memory bounds are checked only without it.
const raceEnabled = true
