package main

// The realtime suite compares rtkit's hub with centrifuge and melody over
// WebSocket (loadgen.go), with the workloads of workloads.go: rooms are
// chat rooms (channels), publishes are messages from a joined client,
// except in lat50s, where the server publishes each payload that the
// generator POSTs to its /publish (serve.go).

var realtimeSuite = loadSuite{
	name:    "realtime",
	servers: []string{"rtkit", "centrifuge", "melody"},
	// rtkit-deflate: rtkit with permessage-deflate (serve.go).
	extra: []string{"rtkit-deflate"},
	child: func(server string) string { return server },
	target: func(cfg config, server string, ch *child) target {
		return wsTarget{url: ch.wsURL(), p: protocols[server],
			publish: "http://" + ch.addr + "/publish", posters: cfg.window}
	},
}
