package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/require"
)

// serveOn runs an app on a fixed address; the returned stop function shuts
// it down (as a restart would).
func serveOn(t *testing.T, addr string) func() {
	t.Helper()
	cfg := testConfig()
	cfg.StatsEvery = 100 * time.Millisecond
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var ln net.Listener
	for range 50 { // the port of a stopped server may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	srv := &http.Server{Handler: a.handler()}
	go srv.Serve(ln)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.shutdown(ctx))
		require.NoError(t, srv.Shutdown(ctx))
	}
	t.Cleanup(stop)
	return stop
}

func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	stop := serveOn(t, addr)
	base := "http://" + addr

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")), // the page's module has run
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "watcher"),
		chromedp.Click(chromedp.CSS("#login button")),
		waitText("#status", "live"),
		waitText("#messages", "0"),
	))

	// A chat message changes the count and shows in the activity feed.
	ada := dial(t, base, login(t, base, "ada"))
	_, err = ada.Join(context.Background(), "general", realtime.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, waitText("#feed", "ada joined #general")))
	// Room lists come from the cache: the hit ratio shows.
	for range 2 {
		require.NoError(t, ada.Call(context.Background(), "rooms.list", nil, nil))
	}
	require.NoError(t, chromedp.Do(ctx, waitText("#cache", "%")))
	before, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#messages")))
	require.NoError(t, err)
	_, err = ada.Publish(context.Background(), "general", map[string]string{"text": "hello dashboard"})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		waitTextFunc("#messages", func(s string) bool { n, err := strconv.Atoi(s); return err == nil && s != before && n > 0 }),
		waitText("#feed", "ada in #general: hello dashboard"),
		waitText("#connections", "1"),
	))

	// A mention of an offline user runs a mail task: the counts and the
	// task feed show it, and the mail is in the outbox (no SMTP_ADDR).
	login(t, base, "bob")
	_, err = ada.Publish(context.Background(), "general", map[string]string{"text": "@bob <i>see this</i>"})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		waitText("#task-feed", "email.send"),
		waitText("#task-feed", "succeeded"),
		waitText("#tasks-succeeded", "1"),
		waitText("#tasks-dead", "0"),
	))
	screenshot(t, ctx, "dashboard")
	outbox, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("outbox-link").href`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(outbox),
		waitText("#mails .to", "bob@example.com"),
		waitText("#mails .body", "<i>see this</i>"),
	))
	italics, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#mails i").length`))
	require.NoError(t, err)
	require.Zero(t, italics, "mail text is never interpreted as HTML")
	screenshot(t, ctx, "outbox")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard.html"),
		waitText("#status", "live"),
	))

	// The server restarts (in memory: its history is gone); the page
	// reconnects by itself and goes on.
	ada.Close()
	stop()
	serveOn(t, addr)
	// The page comes back after the retry delay the old server suggested,
	// learns that history is gone, and starts over.
	require.NoError(t, chromedp.Do(ctx, waitText("#feed", "History was lost")))
	bob := dial(t, base, login(t, base, "bob"))
	_, err = bob.Join(context.Background(), "random", realtime.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		waitText("#feed", "bob joined #random"),
		waitText("#status", "live"),
	))
}

// waitTextFunc waits until ok holds for the text of the element sel.
func waitTextFunc(sel string, ok func(string) bool) chromedp.Action[chromedp.Void] {
	text := chromedp.Text(chromedp.CSS(sel))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := text(ctx, t)
			if err != nil {
				return chromedp.Void{}, err
			}
			if ok(got) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
