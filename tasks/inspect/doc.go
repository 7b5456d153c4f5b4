// Package inspect is an embeddable web inspector for a [tasks.Runner]:
// an [http.Handler] you mount in your own mux to watch queues and fix
// tasks, live, with no separate deployment and no build step.
//
//	in := inspect.New(runner, inspect.Options{
//		Prefix:    "/admin/tasks",
//		Authorize: func(r *http.Request, a inspect.Action) error { ... },
//	})
//	mux.Handle("/admin/tasks/", requireLogin(in))
//	defer in.Shutdown(ctx) // before the http.Server's Shutdown
//
// # Security: read-only unless you say otherwise
//
// WITHOUT [Options.Authorize] THE INSPECTOR SHOWS EVERYTHING TO ANYONE WHO
// REACHES IT AND CHANGES NOTHING: every page (task payloads and errors
// included) is readable, and every action answers 403. Mount it behind
// your own authentication, and set Authorize to decide, per request and
// [Action], who may read and who may retry, cancel, delete, run or pause.
// Authorize is called for every request, reading ([ActionRead]) included.
//
// Every action is a POST carrying a CSRF token: the HMAC (under
// [Options.Secret]) of a random cookie the inspector gives each browser
// (HttpOnly, SameSite=Strict, scoped to Prefix). A POST without the token,
// or with another browser's, gets 403. Give every node the same Secret
// when a load balancer may send a browser's POST to another node.
//
// All task data (types, IDs, payloads, errors, unique keys, node names)
// is escaped by html/template, and the page script writes live data only
// as text, so a payload holding "<script>" shows as text. Pages are sent
// with a Content-Security-Policy that allows only the inspector's own
// scripts and styles, and may not be framed.
//
// # Pages
//
//   - The overview ("/"): each queue's tasks by state, each number a link
//     to the list; a pause or resume button per queue; attempts processed
//     and failed per minute over the last hour (a uPlot chart), counted
//     from the runners' events since the inspector's first request (the
//     page says so); the nodes
//     running tasks now, with their tasks (up to 200 per queue).
//   - A list ("/queues/{queue}/{state}"): 50 tasks a page in the state's
//     order, with a cursor to the next page; ?q= finds the task with that
//     ID, or the tasks (up to 50) whose type or unique key is q among the
//     first 5,000 of the list. Checkboxes and the "whole list" box (the
//     first 1,000 tasks) apply run now, retry, cancel or delete in bulk.
//   - A task ("/task?id="): its fields, its payload and progress as
//     indented JSON text (cut at [Options.MaxPayload], 64 KiB by default,
//     with a note of what was cut; the \u003c, \u003e and \u0026 escapes
//     of encoding/json show as <, > and &, as text), its last error, the
//     actions its state allows, and its attempts (node, start, duration,
//     outcome, error) and events as this inspector saw them in the
//     runner's events since it started (the store keeps only the latest
//     attempt's error); the inspector remembers the latest 2,000 events
//     of all tasks. A task with none says so and why, and points at the
//     stored state, attempt count and times above.
//
// Every page's header starts with [Options.BackLink], when set: a link
// back to the app that mounts the inspector.
//
// # Live updates
//
// At its first request the inspector subscribes to the runner's events
// ([tasks.Runner.Subscribe]: with a shared Redis backplane, the events of
// every node). A quarter of a second after anything changes it reads the
// counts once and publishes them, with the per-minute rates, as a
// "counts" event on its own [sse.Broker] ("/events"); one read per
// quarter second at most, however busy the queues. Pages update their
// numbers and chart in place, and a list or task page whose numbers
// moved reloads its content (unless tasks are selected). The rates count
// the attempts that ended while this inspector was running, so each node
// serving the inspector has its own.
//
// # Actions
//
// A POST to "/action" with the form fields action (an [Action]), csrf,
// and either id (one or more task IDs), or all=1 with queue and state (the
// first 1,000 tasks of that list), or queue (pause, resume). A task the
// action doesn't fit (deleting a running task, retrying a pending one) is
// skipped; if none was changed the answer is the first failure: 404 for
// an unknown task, 409 for the wrong state. Success redirects (303) to the
// form's back field when it is a path under Prefix, else to the overview.
package inspect
