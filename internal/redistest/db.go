package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const defaultAddr = "127.0.0.1:6379"

// Addr returns the address of the shared Redis: the host:port of $REDIS_URL
// (a redis:// or rediss:// URL, as [redis.ParseURL] reads it), or
// "127.0.0.1:6379" when REDIS_URL is unset. A REDIS_URL that doesn't parse is
// returned as it is, for messages; [New] fails the test on it.
func Addr() string {
	opts, err := sharedOptions()
	if err != nil {
		return os.Getenv("REDIS_URL")
	}
	return opts.Addr
}

// Required reports whether RTKIT_REQUIRE_REDIS=1, in which case the helpers
// fail a test that can't get a Redis instead of skipping it.
func Required() bool {
	return os.Getenv("RTKIT_REQUIRE_REDIS") == "1"
}

// sharedOptions returns fresh options for the shared server.
func sharedOptions() (*redis.Options, error) {
	u := os.Getenv("REDIS_URL")
	if u == "" {
		return &redis.Options{Addr: defaultAddr}, nil
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("redistest: REDIS_URL: %w", err)
	}
	return opts, nil
}

// unavailable skips the test, or fails it when [Required].
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format+" (RTKIT_REQUIRE_REDIS=1, so this fails instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// DB is an isolated namespace on the shared Redis for one test. Its fields
// are read-only; DB is safe for concurrent use.
type DB struct {
	// Prefix starts every key and channel name the test uses, e.g.
	// "rtkit-test:TestHub_Publish:1f2e3d4c:". It is unique per call to New
	// and holds no '{' or '}' (so it never forms a cluster hash tag) and no
	// glob characters.
	Prefix string

	// Opts are the options for the shared server. They are shared: copy
	// them before changing a field.
	Opts *redis.Options
}

// New returns a namespace for t on the shared Redis at [Addr].
//
// It pings the server first and skips t, naming the address and how to set
// REDIS_URL, when it doesn't answer within a second (fails t when
// [Required]). When t ends, after the cleanups t registers later, New's
// cleanup deletes every key that starts with [DB.Prefix].
func New(t testing.TB) *DB {
	t.Helper()
	opts, err := sharedOptions()
	if err != nil {
		t.Fatal(err)
	}

	// The probe fails at once on a refused connection, instead of retrying
	// until the timeout hides the reason.
	probeOpts := *opts
	probeOpts.DialTimeout = time.Second
	probeOpts.DialerRetries = 1
	probeOpts.MaxRetries = -1
	probe := redis.NewClient(&probeOpts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err = probe.Ping(ctx).Err()
	cancel()
	if cerr := probe.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unavailable(t, "redistest: no Redis answers at %s (%v); start one there, or point the tests at one with REDIS_URL=redis://host:port", opts.Addr, err)
	}

	db := &DB{Prefix: prefixFor(t.Name()), Opts: opts}
	t.Cleanup(func() {
		if err := deletePrefix(opts, db.Prefix); err != nil {
			t.Errorf("redistest: deleting keys %s*: %v", db.Prefix, err)
		}
	})
	return db
}

// Client returns a new client to the shared server, closed when t ends.
// Each call makes a separate client with its own connections, so two of them
// act as two nodes of an application.
func (db *DB) Client(t testing.TB) *redis.Client {
	t.Helper()
	opts := *db.Opts
	c := redis.NewClient(&opts)
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

// ClientDB returns a new client to database n of the shared server, closed
// when t ends, and deletes the keys under [DB.Prefix] in that database when
// t ends. Tests of what separates databases use it; everything else uses
// [DB.Client].
func (db *DB) ClientDB(t testing.TB, n int) *redis.Client {
	t.Helper()
	opts := *db.Opts
	opts.DB = n
	t.Cleanup(func() {
		if err := deletePrefix(&opts, db.Prefix); err != nil {
			t.Errorf("redistest: deleting keys %s* in database %d: %v", db.Prefix, n, err)
		}
	})
	c := redis.NewClient(&opts)
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

// closeClient closes c, which the test may have closed already.
func closeClient(t testing.TB, c interface{ Close() error }) {
	if err := c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		t.Errorf("redistest: closing client: %v", err)
	}
}

// prefixFor makes a unique prefix from a test name, keeping only characters
// that are neither hash tag braces, glob characters nor the ':' separator.
func prefixFor(name string) string {
	const maxName = 80
	var b strings.Builder
	b.WriteString("rtkit-test:")
	for i, r := range name {
		if i >= maxName {
			break
		}
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9',
			r == '_', r == '-', r == '.', r == '/', r == '#':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	fmt.Fprintf(&b, ":%08x:", rand.Uint32())
	return b.String()
}

// deletePrefix unlinks every key that starts with prefix on the server of
// opts. prefix must hold no glob characters.
func deletePrefix(opts *redis.Options, prefix string) (err error) {
	o := *opts
	rdb := redis.NewClient(&o)
	defer func() {
		if cerr := rdb.Close(); err == nil {
			err = cerr
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const batch = 500
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := rdb.Unlink(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}
