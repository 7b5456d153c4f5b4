// Package engine runs server-authoritative multiplayer games: a fixed-rate
// tick loop, a deterministic simulation step, per-player input queues with
// sequence numbers, a snapshot every tick and compact deltas against the
// snapshot each viewer last acknowledged. It has no network in it: a server
// feeds it inputs and acknowledgements and sends the deltas it returns.
//
// # The model
//
// A [Game] holds the state of one match and advances it by one tick at a
// time with [Game.Step], from the inputs the engine hands it. Step must be
// deterministic: the same state, the same inputs and the same seed give the
// same next state, byte for byte, on any machine (integers only, no maps
// iterated, no clock, no global random source). The game describes its
// state as a sorted list of [Entity] values (an ID and its encoded data),
// which is all the engine needs to build snapshots and deltas, so any game
// written on this interface gets them for free.
//
// # Inputs
//
// A [Match] keeps a bounded queue of inputs per player. Each input carries
// the player's sequence number (strictly increasing per player) and the
// tick the client meant it for. At each tick the engine takes at most one
// input per player from the front of its queue and gives it to the game,
// so a burst of inputs plays out one per tick, in order. [Match.Submit]
// refuses, with an error wrapping a sentinel:
//
//   - a sequence number not greater than the last one submitted:
//     [ErrStale] (a duplicate or a replay);
//   - a full queue ([MatchOptions.QueueLen], default 8): [ErrQueueFull];
//   - an input meant for a tick more than [MatchOptions.MaxLate] ticks in
//     the past (default 15, half a second at 30 Hz): [ErrLate];
//   - one meant for a tick more than MaxLate ticks in the future:
//     [ErrFuture].
//
// A late input within MaxLate is applied at the next tick, never in the
// past: the server does not rewind. Its effect arrives a little later than
// the client predicted, and the client's reconciliation absorbs the
// difference. Every snapshot carries, per player, the sequence number of
// the newest input processed (applied or refused), so that the client can
// drop what the server has seen and replay the rest (see [AcksEntity]).
//
// # Snapshots and deltas
//
// After every Step the match records a [Snapshot] (the tick and the
// game's entities) in a ring of the last [MatchOptions.History] ticks
// (default 64). A viewer (player or spectator) acknowledges the newest
// snapshot it holds with [Match.Ack]; [Match.DeltaFor] returns the delta
// from that snapshot to the current one: the entities added or changed and
// the IDs removed. A viewer with no acknowledged snapshot in the ring (new,
// or fallen behind) gets a full snapshot, a delta with base 0. Deltas are
// encoded once per base per tick, so viewers who acknowledged the same
// tick share the same bytes.
//
// # Time
//
// [Run] calls a function at a fixed rate, on the time package's clock, and
// reports how late each tick started. Under testing/synctest the clock is
// the bubble's fake one, so a test drives any number of ticks instantly and
// exactly. Run never runs two ticks at once; when it falls more than
// [MaxCatchUp] ticks behind it skips ahead instead of bursting.
package engine
