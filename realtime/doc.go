// Package realtime is a WebSocket room hub for net/http services, with a
// Go client and a browser client.
//
// A [Hub] is an [net/http.Handler]: mount it, and clients can join rooms,
// publish to them, see who is present, send direct messages to a user on
// any node, and call server methods with replies:
//
//	hub := realtime.NewHub(realtime.Options{
//		Authenticate: func(r *http.Request) (realtime.Identity, error) { ... },
//	})
//	hub.HandleCall("rooms.list", listRooms)
//	mux.Handle("GET /ws", hub)
//	mux.Handle("GET /rtkit.js", realtime.ClientHandler())
//	...
//	defer hub.Shutdown(ctx)
//
// The wire protocol (JSON objects over text frames; room messages as JSON
// arrays for clients that negotiate the [CompactSubprotocol], as the Go
// client and rtkit.js do) is documented in PROTOCOL.md beside this file,
// with every op, field, error code and close code.
//
// # History and recovery
//
// Rooms are topics of an [rtkit.Backplane]: every message gets an ID that
// increases within its room and is kept in a bounded history. A client that
// reconnects rejoins with the ID of the last message it saw and gets exactly
// what it missed, then live messages; when history no longer reaches back
// that far it is told so ("recovered": false, or a "gap" event) and reloads.
// [Dial] and the browser client do this by themselves.
//
// # Presence
//
// Who is in a room is kept in a [Presence] store (in memory, or
// [RedisPresence] across nodes) and reaches members as coalesced events:
// each node gathers a room's joins and leaves for
// [Options].PresenceInterval (default 200ms) and sends one event with the
// room's count and, while the room has at most [Options].PresenceLimit
// members (default 100), the joins and leaves as a diff that clients apply
// by connection. Above the limit members get the count only, when it
// changed, one interval per PresenceLimit members apart (at most 5s at the
// defaults). Filling a room of N members therefore costs a few small
// events per member instead of N. The join reply carries
// the count and, in a small room, a snapshot of the members taken after
// the subscription, so that snapshot plus diffs is the exact list; [Client]
// ([Client.Members]) and the browser client keep it. A join with
// "presence": false ([JoinOptions].NoPresence) gets no presence events.
// Presence events never close a connection as a slow consumer: one that
// does not fit in half of the send queue is replaced by a "resync" event.
// Server code reads the full list with [Hub.Presence] and the count with
// [Hub.PresenceCount] (O(1) with a [PresenceCounter]). PROTOCOL.md has the
// details. In bench/ (join5k: 5,000 clients connect and join one room, on
// a shared 2-vCPU machine), filling the room took 2.8s (median of 3;
// centrifuge 2.8s, melody 1.4s in the same run) and wrote 15,400 objects;
// before, every join went to every member: 28.5s and 12.5 million objects
// (centrifuge 3.1s). TestRoomOf5000FillsWithoutDrops checks that no member
// of such a room is dropped.
//
// # Scaling out
//
// With an [rtkit.RedisBackplane] and a [RedisPresence], any number of hubs
// share rooms, presence, direct messages and kicks. Presence entries of a
// node that dies expire, and the survivors announce the departures.
//
// On a Redis Cluster with replicas (or Sentinel), a failed primary stops
// only what lives in its slots, and only until a replica takes over: with
// cluster-node-timeout 2s, a direct message to a user whose inbox slot
// failed over went through 3.8–3.9s after the primary was SIGKILLed, and a
// join (presence) in a room of that slot 3.8–4.6s after it
// (TestHubsSurviveClusterFailover); members resume from the stream with
// neither gap nor duplicate (see [rtkit.RedisBackplane] for the numbers).
// [RedisPresence] refreshes a Cluster client's slot map after a
// connection error and retries once, so it does not wait for go-redis's
// once-a-minute refresh.
//
// # Security and limits
//
// Authentication runs before the upgrade (HTTP 401/403); origin checks are
// always on; Authorize decides each join, publish, presence list, direct
// message and call (by default it refuses the topics rtkit uses internally,
// [rtkit.ReservedTopic]); publishing and listing presence need membership.
// What other server code publishes to a room reaches members as data, never
// as a hub command: only payloads starting with [EnvelopeMark] are hub
// envelopes. Text frames are always valid UTF-8. Inbound
// size, rate, rooms per connection and connections per user are limited
// with safe defaults ([Options]). A member that cannot keep up is closed
// with [CloseSlowConsumer] instead of slowing its rooms; its client
// reconnects and recovers. Connections are also limited per client address
// (MaxConnsPerIP, off by default) and per node (MaxConns, 100,000).
//
// History a join replays obeys the same bound as live traffic: it is held
// as the backplane's own messages and queued as the connection drains, half
// of SendQueueBytes at a time, and one rejoin replays at most MaxReplay
// messages (beyond: the newest ones and "recovered": false). A connection
// that never reads therefore costs the node at most about 2 ×
// SendQueueBytes (what waits, and the batch being written), the 64 KiB
// write buffer and 24 bytes per message still to replay, whatever the
// history holds: 50 such connections rejoining 5 rooms of 1,000 messages
// from "0-0" add under 17 MiB of heap with SendQueueBytes at 32 KiB
// (TestReplayMemoryIsBoundedByTheQueue; 258 MiB when replays were queued
// at once).
//
// # Performance
//
// A message is encoded once per node and the same bytes are queued to every
// local member; a connection's writer joins everything queued into one frame
// and one write. The writer of a connection that gets messages steadily
// (bursts less than a second apart) waits for the next burst instead of
// ending, so a steady rate costs no goroutine start per message; it ends
// about a second after the connection goes quiet, so an idle connection
// costs one reading goroutine and its buffers. Writes are bounded by the
// socket's write deadline, renewed once per WriteTimeout rather than per
// burst. Figures against centrifuge
// and melody are in bench/README.md.
//
// # Wire bytes
//
// A room message costs its payload plus, for a client that negotiated
// [CompactSubprotocol], 27 bytes for a room named "room" (the array
// ["room","1796188090099-0",DATA]), or 57 in the object form that clients
// which do not ask for it receive. A member's message also carries its
// sender's user and connection IDs: 6 bytes of punctuation besides the
// two names in the array, 29 in the object form's "from". The hub encodes each form at
// most once per message per node, the compact one only when a member
// needs it. BenchmarkWireBytes, bytes the server writes per delivered
// 37-byte payload, WebSocket header included (2 cores, load average 11):
//
//	                   one message per frame   16 per frame
//	objects                    97.7                97.4
//	compact arrays             67.6                67.2
//	objects, deflate           84.2                10.6
//	compact, deflate           64.7                 9.2
//
// (centrifuge's protocol costs 43 bytes plus the header for the same
// message.)
//
// # Compression
//
// [Options.Compression] lets clients that ask for it (browsers always do;
// the Go client with [DialOptions.Compression]) receive frames compressed
// with permessage-deflate, each on its own (no context takeover: nothing
// is kept per connection). It is off by default: a message is encoded once
// per node but compressed once per member, which costs server CPU for
// every delivery. It pays for frames that carry several messages or long
// text (bursts, replays, chat with long messages); one short message
// shrinks by about a tenth. PROTOCOL.md's Compression section has the
// details.
package realtime
