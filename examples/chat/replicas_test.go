package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
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

// Two app instances in this test process, each on its own listener, share
// one Redis (as two processes would: they share nothing else). Users on
// each exchange room and direct messages, see the same presence and
// counts; a mention on replica B mails a user who signed in on replica A;
// and a user whose replica dies reconnects to the other and misses
// nothing.
func TestReplicasShareEverythingOverRedis(t *testing.T) {
	sink := startSMTP(t, "127.0.0.1:0", nil)
	cfg := redisConfig(t, mailConfig(sink.addr))
	quiet := slog.New(slog.DiscardHandler)

	// Replica A is started by hand, to be killed mid-test.
	a, err := newApp(cfg, quiet)
	require.NoError(t, err)
	srvA := httptest.NewServer(a.handler())
	killed := false
	kill := func() {
		if killed {
			return
		}
		killed = true
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace: connections drop without a close handshake
		_ = a.shutdown(ctx)
		srvA.Close()
	}
	t.Cleanup(kill)
	_, baseB := startAppWith(t, cfg, quiet)
	lb, baseLB := newFailover(t, srvA.URL, baseB)

	// Carol signs in on A, then leaves: she is offline.
	carolTok := register(t, srvA.URL, "carol")
	carol := dial(t, srvA.URL, carolTok)
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		members, err := bob.Presence(ctx, "general")
		return err == nil && len(members) == 2 // ana is back, on B
	}, 10*time.Second, 20*time.Millisecond)
}
