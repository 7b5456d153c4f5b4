// Package sse is a Server-Sent Events broker for net/http services, with a
// Go client.
//
// A [Broker] is an [net/http.Handler] that streams one or more topics to
// each client; [Broker.Publish] sends an event to a topic from anywhere:
//
//	broker := sse.NewBroker(sse.Options{
//		Authorize: func(r *http.Request, topic string) error { ... },
//	})
//	mux.Handle("GET /events", broker) // /events?topic=orders&topic=alerts
//	broker.Publish(ctx, "orders", sse.Event{Type: "created", Data: orderJSON})
//
// In the page, a plain EventSource:
//
//	const es = new EventSource("/events?topic=orders");
//	es.addEventListener("created", (e) => show(JSON.parse(e.data)));
//	es.addEventListener("rtkit-reset", () => reloadOrders());
//
// # Resuming without a gap
//
// Topics live on an [rtkit.Backplane], which keeps a bounded history. Every
// event's id is the stream's position in each of its topics, so a client
// that reconnects (EventSource does so by itself, sending Last-Event-ID)
// gets exactly what it missed, then live events. A client that cannot set
// the header passes the id as the last_event_id query parameter. When
// history no longer reaches back that far, the stream says so first with a
// [ResetEvent], so the page reloads instead of silently missing events.
//
// The id is the topics' positions joined by commas, in the order of the
// topic names sorted bytewise (whatever order the request named them in),
// each "<ms>-<seq>" or "0-0" for a topic with no message yet:
//
//	id: 1732800000000-3,0-0,1732800000123-0
//
// A stream starts with a block of a retry field and an id field only (no
// data, so no event is dispatched): that id is the stream's position, and
// a client that is not EventSource must adopt it as its Last-Event-ID, as
// EventSource does, even if no event follows before it reconnects.
//
// Resuming, per topic:
//   - an id still in history: the events after it, then live ones;
//   - an id older than history, or more than MaxReplay events behind: a
//     [ResetEvent] naming the topic, then (by default) the retained history
//     replayed (at most MaxReplay events, the newest), then live ones. A
//     page that reloads its state on reset asks for on_reset=live
//     ([OnResetParam]) to start at the newest event instead, so that
//     nothing is applied twice;
//   - an id beyond the topic's newest event (made up, or from a server that
//     lost its history): a [ResetEvent], then live events; the opening id
//     is the topic's real position, not the client's;
//   - an id that does not parse or has the wrong number of positions
//     (another topic set, "0", garbage): a [ResetEvent] for every topic,
//     then live events from the newest. "0-0" is a position: replay from
//     the start of what is retained.
//
// Events that other rtkit packages publish to the same topics stream too: a
// chat room of the realtime hub streams its messages as "msg" events and
// its presence changes as "presence" events.
//
// # The format
//
// Events follow the WHATWG event-stream format exactly ([AppendEvent]):
// data split on CR, LF and CRLF, id and event fields refused when they
// would break a line, retry in milliseconds, comments; events of any size.
// [Parser] reads the same format, for [Subscribe] and any other consumer.
// The stream is UTF-8: Publish and AppendEvent refuse data or a type that
// is not valid UTF-8 ([ErrInvalidEvent]), and payloads other code
// publishes on the backplane stream with invalid bytes replaced by U+FFFD.
//
// # Behaviour under load and faults
//
// A stream starts with a retry hint and its position; it sends a heartbeat
// comment when silent (15 s by default), bounds every write with a
// deadline (WriteTimeout, up to a quarter more; on its connection, or
// through [net/http.ResponseController]), and is dropped when its
// queue of unwritten events exceeds QueueBytes (counted as the events' data,
// before framing; an event always fits an empty queue, so any event Publish
// accepts reaches a reader that keeps up). A dropped stream finishes the
// write under way, sends a retry hint and ends the response cleanly. A
// resume replays at most MaxReplay events per topic, encoded and written
// 64 KiB at a time, so it costs the node about that much per stream plus
// 40 bytes per event still to write: 50 streams of 5 topics resuming from
// "0-0" over histories of 1,000 events that never read add under 21 MiB
// of heap (TestResumeMemoryIsBounded; 180 MiB when replays were encoded at
// once). Streams can be given a maximum lifetime (with jitter, so that
// reconnects spread out) or end when the request's credentials expire.
// Shutdown ends every stream with a randomized retry hint instead of a
// status that would make browsers stop reconnecting.
//
// # Cost per stream and per event
//
// Over HTTP/1.x a stream takes its connection over from net/http once it
// is subscribed (Hijack; Options.NoHijack keeps it in net/http, as are
// HTTP/2 streams and streams whose ResponseWriter cannot hijack): it
// writes its response itself (the headers set on the ResponseWriter, a
// Date, a chunked body, or for HTTP/1.0 a body that ends with the
// connection, and Connection: close) and ServeHTTP returns while the
// stream goes on; use Options.OnStream, not a wrapper around ServeHTTP,
// to see streams start and end. Nothing runs for an idle stream but one
// goroutine reading its connection, to see the client go: with
// net/http's goroutines, request and 10 KiB of buffers gone, an idle
// stream costs about 4.5 KB of heap and stack, against 22.2 KB for
// go-sse and 27.8 KB before (bench/README.md). An event that finds a
// stream of one topic on a plain TCP or Unix socket (not TLS) with
// nothing else to write is written by one of the broker's flush workers
// (at most GOMAXPROCS, running while there are such events and ending
// when there are none) in one write that does not wait on the socket,
// framed once per node: no goroutine is started for it. What the socket
// does not take at once, an event for any other stream (several topics,
// HTTP/2, TLS, NoHijack, or one already writing) and a heartbeat start a
// writer goroutine, which writes everything queued for the stream in one
// write (and flush), within WriteTimeout, and ends when the queue is
// empty; a write puts the next heartbeat off without resetting a timer per event,
// and write deadlines are renewed only when less than WriteTimeout is
// left. Events of a topic are encoded once per node; a stream of a single
// topic writes the shared bytes whole, id included, and in the steady
// state nothing is allocated per event per stream
// (BenchmarkPublishToStreams). At 50 events/s to 1,000 subscribers the
// write system call, one per event per stream, is 82–84% of the
// server's CPU (64–68% with a writer goroutine per event per stream);
// in nine interleaved rounds on a shared machine (bench/README.md, "SSE
// at 50 events/s") the server spent 0.43–0.77× the CPU per delivery of
// the best of go-sse and r3labs/sse.
package sse
