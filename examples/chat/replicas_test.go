package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failover is a TCP load balancer in front of two replicas: it sends
// every connection to the first until told it is down, then to the
// second. It closes every connection it carried when the test ends.
type failover struct {
	primary, secondary string // host:port
	down               atomic.Bool
	wg                 sync.WaitGroup
	mu                 sync.Mutex
	conns              []net.Conn
}

func newFailover(t *testing.T, a, b string) (*failover, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &failover{primary: strings.TrimPrefix(a, "http://"), secondary: strings.TrimPrefix(b, "http://")}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			backend := f.primary
			if f.down.Load() {
				backend = f.secondary
			}
			s, err := net.Dial("tcp", backend)
			if err != nil {
				_ = c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			f.wg.Go(func() { pipe(s, c) })
			f.wg.Go(func() { pipe(c, s) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f, "http://" + ln.Addr().String()
}

// replicas starts two replicas of the app on one Redis and returns their
// addresses and a function that kills the first.
type replicas func(t *testing.T, cfg config) (baseA, baseB string, killA func())

// inProcess runs the replicas as two app instances in this test process,
// each on its own listener (they share nothing but Redis, as processes
// would). Killing A drops its connections without a close handshake.
func inProcess(t *testing.T, cfg config) (string, string, func()) {
	quiet := slog.New(slog.DiscardHandler)
	a, err := newApp(cfg, quiet)
	require.NoError(t, err)
	srvA := httptest.NewServer(a.handler())
	var once sync.Once
	kill := func() {
		once.Do(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // no grace
			_ = a.shutdown(ctx)
			srvA.Close()
		})
	}
	t.Cleanup(kill)
	_, baseB := startAppWith(t, cfg, quiet)
	return srvA.URL, baseB, kill
}

// processes runs the replicas as two processes of the built command, as
// in production; killing A is SIGKILL.
func processes(t *testing.T, cfg config) (string, string, func()) {
	bin := filepath.Join(t.TempDir(), "chat")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	start := func() (string, *exec.Cmd) {
		addr := freeAddr(t)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "ADDR="+addr, "REDIS_URL="+cfg.RedisURL, "REDIS_PREFIX="+cfg.Prefix,
			"CHAT_SECRET="+string(cfg.Secret), "SMTP_ADDR="+cfg.SMTPAddr, "CHAT_MAIL_BATCH="+cfg.MailBatch.String(), "CHAT_ROOMS=general,random")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		base := "http://" + addr
		require.Eventually(t, func() bool {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == http.StatusOK
		}, 30*time.Second, 50*time.Millisecond, "replica at %s never ready", addr)
		return base, cmd
	}
	baseA, cmdA := start()
	baseB, _ := start()
	return baseA, baseB, func() {
		_ = cmdA.Process.Kill()
		_ = cmdA.Wait()
	}
}

// Users on each replica exchange room and direct messages, see the same
// presence and counts; a mention on replica B mails a user who signed in
// on replica A (through a real SMTP server); and a user whose replica dies
// reconnects to the other through a load balancer and misses nothing.
func TestReplicasInOneProcessShareEverythingOverRedis(t *testing.T) {
	testReplicas(t, inProcess)
}

func TestReplicaProcessesShareEverythingOverRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command; -short skips it")
	}
	testReplicas(t, processes)
}

func testReplicas(t *testing.T, run replicas) {
	sink := startSMTP(t, "127.0.0.1:0", nil)
	cfg := redisConfig(t, mailConfig(sink.addr))
	baseA, baseB, kill := run(t, cfg)
	lb, baseLB := newFailover(t, baseA, baseB)

	// Carol signs in on A, then leaves: she is offline.
	carolTok := register(t, baseA, "carol")
	carol := dial(t, baseA, carolTok)
	online(t, carol, "carol")
	require.NoError(t, carol.Close())

	anaTok := register(t, baseLB, "ana") // through the balancer: on A
	bobTok := register(t, baseB, "bob")
	ana, bob := dial(t, baseLB, anaTok), dial(t, baseB, bobTok)
	online(t, ana, "ana")
	online(t, bob, "bob")
	enter(t, ana, "general")
	enter(t, bob, "general")

	// Room messages both ways.
	say(t, bob, "general", "hello from B")
	nextText(t, ana, "general", "hello from B")
	say(t, ana, "general", "hello from A")
	nextText(t, bob, "general", "hello from A")

	// Presence and member counts agree on both replicas.
	var roomsA, roomsB []roomInfo
	call(t, ana, "rooms.list", nil, &roomsA)
	call(t, bob, "rooms.list", nil, &roomsB)
	assert.Equal(t, 2, roomsA[0].Online)
	assert.Equal(t, roomsA[0].Online, roomsB[0].Online)
	pa, err := ana.Presence(context.Background(), "general")
	require.NoError(t, err)
	pb, err := bob.Presence(context.Background(), "general")
	require.NoError(t, err)
	assert.Equal(t, pa, pb)
	assert.Len(t, pa, 2)

	// A direct message from B reaches ana on A.
	var dm struct{ Room string }
	call(t, bob, "dm.open", map[string]string{"user": "ana"}, &dm)
	enter2 := func(c *realtime.Client, topic string) {
		_, err := c.Join(context.Background(), topic, realtime.JoinOptions{})
		require.NoError(t, err)
	}
	enter2(ana, dm.Room)
	say(t, bob, dm.Room, "psst from B")
	assert.Equal(t, "psst from B", nextEvent(t, ana, "user:ana", "dm").Text)
	nextText(t, ana, dm.Room, "psst from B")

	// A mention on B of carol, who signed in on A, mails her.
	say(t, bob, "general", "@carol the build is green")
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, []string{"carol@example.com"}, m.To)
	_, body := parseMail(t, m.Data)
	assert.Contains(t, body, "@carol the build is green")

	// Replica A dies. While ana is cut off, bob writes; her client
	// reconnects through the balancer to B and gets everything.
	lb.down.Store(true)
	kill()
	waitOp(t, ana, "disconnected")
	say(t, bob, "general", "while you were away")
	say(t, bob, dm.Room, "and in private")
	nextText(t, ana, "general", "while you were away")
	nextText(t, ana, dm.Room, "and in private")
	// Ana is present again, on B (a killed process's own entries linger
	// until they expire: count her new connection).
	require.Eventually(t, func() bool {
		members, err := bob.Presence(context.Background(), "general")
		for _, m := range members {
			if err == nil && m.User == "ana" && m.Conn == ana.ConnID() {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	var rooms []roomInfo
	call(t, bob, "rooms.list", nil, &rooms)
	assert.Equal(t, 2, rooms[0].Online, "ana and bob, however many connections")
}
