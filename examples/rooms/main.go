// Command rooms is the smallest real WebSocket chat built on rtkit's
// realtime hub: people pick a name, join and leave rooms, see the room's
// recent history when they join, see who is in the room, and get every
// message as it is sent. Practice 35 / exercise 1 of the course.
//
//	go run ./examples/rooms                  # then open http://127.0.0.1:8080
//	REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:8081 go run ./examples/rooms
//
// The environment:
//
//	ADDR          listen address (default 127.0.0.1:8080)
//	REDIS_URL     share rooms, history and presence with every process on
//	              this Redis; unset: everything in this process's memory
//	REDIS_PREFIX  starts every Redis key (default "rooms:")
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/realtime"
)

// The page: one HTML file with the browser client's code inline.
//
//go:embed index.html
var page []byte

// The rooms anyone may join. A real app would keep them in a database.
var rooms = []string{"general", "random", "help"}

// A name is 1 to 20 letters, digits, '-' or '_'.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,20}$`)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("rooms stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	addr := envOr("ADDR", "127.0.0.1:8080")
	hub, closeRedis, err := newHub(os.Getenv("REDIS_URL"), envOr("REDIS_PREFIX", "rooms:"), log)
	if err != nil {
		return err
	}
	defer closeRedis()
	srv := &http.Server{Addr: addr, Handler: routes(hub), ReadHeaderTimeout: 10 * time.Second}

	// Ctrl-C (or SIGTERM) stops the server gracefully: the hub closes every
	// WebSocket with 1001 "going away", and clients reconnect elsewhere.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("rooms listening", "url", "http://"+addr, "redis", os.Getenv("REDIS_URL") != "")
	select {
	case err := <-errc: // could not listen
		return err
	case <-ctx.Done(): // Ctrl-C
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hub.Shutdown(sctx) // WebSockets are hijacked: srv.Shutdown does not see them
	return srv.Shutdown(sctx)
}

// routes serves the page, the browser client and the hub.
func routes(hub *realtime.Hub) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.Handle("GET /rtkit.js", realtime.ClientHandler()) // import { connect } from "/rtkit.js"
	mux.Handle("GET /ws", hub)                            // the WebSocket endpoint
	return mux
}

// newHub builds the hub: in memory, or on Redis when redisURL is set so
// that several processes share rooms, history and presence. The returned
// function closes what Redis needed; call it after hub.Shutdown.
func newHub(redisURL, prefix string, log *slog.Logger) (*realtime.Hub, func(), error) {
	opts := realtime.Options{
		// Who is connecting? Here, whoever they say they are (?name=ada).
		// A real app checks a token or a session cookie; an error refuses
		// the upgrade with HTTP 401.
		Authenticate: func(r *http.Request) (realtime.Identity, error) {
			name := r.URL.Query().Get("name")
			if !validName.MatchString(name) {
				return realtime.Identity{}, errors.New("name must be 1-20 letters, digits, - or _")
			}
			return realtime.Identity{User: name}, nil
		},
		// May they do this? Only the rooms above can be joined; the hub
		// itself makes sure people publish only to rooms they joined.
		Authorize: func(ctx context.Context, id realtime.Identity, a realtime.Action) error {
			if a.Kind == realtime.ActionJoin && !slices.Contains(rooms, a.Room) {
				return &realtime.Error{Code: realtime.CodeNotFound, Message: "no room " + a.Room}
			}
			return nil
		},
		OnConnect: func(c realtime.ConnInfo) { log.Info("connected", "user", c.Identity.User, "conn", c.ID) },
		OnDisconnect: func(c realtime.ConnInfo, err error) {
			log.Info("disconnected", "user", c.Identity.User, "conn", c.ID, "why", err)
		},
		// A frame over 4 KiB closes the connection with 1009; the client
		// reconnects by itself and rejoins its rooms.
		MaxMessageSize: 4 << 10,
		MaxHistory:     50,
		Logger:         log,
	}
	closeRedis := func() {}
	if redisURL != "" {
		ropts, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		rdb := redis.NewClient(ropts)
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: rdb, Prefix: prefix, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		presence, err := realtime.NewRedisPresence(realtime.RedisPresenceOptions{Client: rdb, Prefix: prefix})
		if err != nil {
			return nil, nil, err
		}
		opts.Backplane, opts.Presence = bp, presence
		closeRedis = func() { _ = bp.Close(); _ = rdb.Close() }
	}
	hub := realtime.NewHub(opts)

	// A call (request/response, like a Socket.IO ack): the page asks for
	// the rooms and how many people are in each.
	type room struct {
		Name   string `json:"name"`
		Online int    `json:"online"`
	}
	hub.HandleCall("rooms", func(ctx context.Context, _ *realtime.Call) (any, error) {
		out := make([]room, 0, len(rooms))
		for _, name := range rooms {
			n, err := hub.PresenceCount(ctx, name)
			if err != nil {
				return nil, err
			}
			out = append(out, room{name, n})
		}
		return out, nil
	})
	return hub, closeRedis, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
