package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitText waits until the text of the element sel (a CSS selector)
// contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return waitTextFunc(sel, func(s string) bool { return strings.Contains(s, want) })
}

// waitTextFunc waits until ok holds for the text content of the element
// sel (visible or not: a closed drawer's too).
func waitTextFunc(sel string, ok func(string) bool) chromedp.Action[chromedp.Void] {
	text := chromedp.TextContent(chromedp.CSS(sel))
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
				return chromedp.Void{}, fmt.Errorf("%s never matched; it says %q: %w", sel, got, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// waitJS waits until the JavaScript expression is true.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	eval := chromedp.Evaluate[bool](expr)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			ok, err := eval(ctx, t)
			if err != nil {
				return chromedp.Void{}, err
			}
			if ok {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("never true: %s: %w", expr, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// signUp registers handle through the page of a new browser and waits
// until the chat is live.
func signUp(t *testing.T, base, handle, name string) context.Context {
	t.Helper()
	ctx := browsertest.New(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.Click(chromedp.CSS("#tab-register")),
		chromedp.SendKeys(chromedp.CSS("#reg-handle"), handle),
		chromedp.SendKeys(chromedp.CSS("#reg-name"), name),
		chromedp.SendKeys(chromedp.CSS("#reg-email"), handle+"@example.com"),
		chromedp.SendKeys(chromedp.CSS("#reg-password"), "password-"+handle),
		chromedp.Click(chromedp.CSS("#register-form button[type=submit]")), // a click fires submit; form.submit() would not
		chromedp.WaitVisible(chromedp.CSS("#chat")),
		waitText("#status", "live"),
		chromedp.WaitVisible(chromedp.CSS(`#rooms button[aria-current="true"]`)),
	))
	return ctx
}

// sendText types text into the message box and sends it.
func sendText(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		return chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#text"), text), chromedp.Click(chromedp.CSS("#send button")))
	})
}

func TestChatInBrowsers(t *testing.T) {
	base := startApp(t, testConfig())
	ana := signUp(t, base, "ana", "Ana María") // the first user: admin
	bob := signUp(t, base, "bob", "Bob")

	// Presence and typing; the admin's list of everyone has bob, who
	// registered after her page opened, online.
	require.NoError(t, chromedp.Do(ana, waitText("#online", "@bob"), waitJS(`!!document.querySelector("#all-users li .dot.on ~ .handle") &&
		[...document.querySelectorAll("#all-users li")].some((li) => li.textContent.includes("@bob") && li.querySelector(".dot.on"))`)))
	require.NoError(t, chromedp.Do(bob, waitText("#online", "@ana"), chromedp.SendKeys(chromedp.CSS("#text"), "hel")))
	require.NoError(t, chromedp.Do(ana, waitText("#typing", "@bob is typing")))

	// Messages both ways; text stays text, links are links.
	require.NoError(t, chromedp.Do(bob, sendText("hello Ana, see https://example.com/docs?a=1")))
	require.NoError(t, chromedp.Do(ana,
		waitText("#messages", "hello Ana"),
		waitJS(`!!document.querySelector('#messages a[href="https://example.com/docs?a=1"][rel~="noopener"]')`),
		sendText("hi @bob"),
	))
	require.NoError(t, chromedp.Do(bob,
		waitText("#messages", "hi @bob"),
		waitJS(`!!document.querySelector("#messages li.mentioned .mention-me")`),
		sendText("<img src=x onerror=alert(1)>"),
	))
	require.NoError(t, chromedp.Do(ana, waitText("#messages", "<img src=x onerror=alert(1)>")))
	imgs, err := chromedp.Run(ana, chromedp.Evaluate[int](`document.querySelectorAll("#messages img").length`))
	require.NoError(t, err)
	assert.Zero(t, imgs, "message text is never interpreted as HTML")

	// The admin deletes bob's message; it disappears for bob.
	require.NoError(t, chromedp.Do(ana,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.confirm = () => true; true`))
			return err
		}),
		chromedp.Click(chromedp.CSS(`#messages li.mine ~ li:not(.mine) .actions button[aria-label="Delete this message"]`)),
	))
	require.NoError(t, chromedp.Do(bob, waitJS(`![...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("<img src=x"))`)))

	// A mention in a room you are not looking at: an in-page notification.
	require.NoError(t, chromedp.Do(ana, chromedp.Click(chromedp.CSS(`#rooms button[data-room="random"]`)), waitText("#room-title", "random")))
	require.NoError(t, chromedp.Do(bob, sendText("@ana are you there?")))
	require.NoError(t, chromedp.Do(ana, waitText("#toasts", "Bob mentioned you in #general")))

	// A direct message reaches bob (and only him: see
	// TestDirectMessagesReachOnlyTheirRecipient for the wire).
	require.NoError(t, chromedp.Do(ana,
		chromedp.SendKeys(chromedp.CSS("#new-dm-user"), "@bob"),
		chromedp.Click(chromedp.CSS("#new-dm button")),
		waitText("#room-title", "Bob (@bob)"),
		sendText("psst, just for you"),
	))
	require.NoError(t, chromedp.Do(bob,
		waitText("#toasts", "Ana María sent you a message"),
		waitText("#dms", "Ana María"),
		chromedp.Click(chromedp.CSS(`#dms button[data-dm="ana"]`)),
		waitText("#messages", "psst, just for you"),
	))

	// The admin makes a private room: bob does not see it, and the server
	// refuses it to him on the WebSocket and on SSE alike.
	require.NoError(t, chromedp.Do(ana,
		chromedp.SendKeys(chromedp.CSS("#new-room-name"), "secret"),
		chromedp.Click(chromedp.CSS("#new-room-private")),
		chromedp.Click(chromedp.CSS("#new-room button")),
		waitText("#room-title", "secret"),
		sendText("the plan"),
	))
	require.NoError(t, chromedp.Do(bob, waitText("#rooms", "random")))
	rooms, err := chromedp.Run(bob, chromedp.Text(chromedp.CSS("#rooms")))
	require.NoError(t, err)
	assert.NotContains(t, rooms, "secret")
	wire, err := chromedp.Run(bob, chromedp.Evaluate[string](`new Promise((resolve) => {
		const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
		ws.onmessage = (ev) => {
			for (const line of ev.data.split("\n")) {
				const o = JSON.parse(line);
				if (o.op === "welcome") ws.send(JSON.stringify({op: "join", room: "secret", history: 10, id: 1}));
				if (o.id === 1) { ws.close(); resolve(o.op + ":" + (o.code || "")); }
			}
		};
	})`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, "error:forbidden", wire, "the WebSocket join is refused")
	require.NoError(t, chromedp.Do(bob,
		chromedp.Navigate(base+"/#room=secret"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		waitText("#room-note", "#secret is not open to you"),
		waitText("#room-title", "general"),
	))
	sse, err := chromedp.Run(bob, chromedp.Evaluate[int](`fetch("/events?topic=secret").then((r) => r.status)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, 403, sse, "the SSE stream is refused")

	// A reload keeps the session.
	require.NoError(t, chromedp.Do(bob,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#chat")),
		waitText("#me-handle", "@bob"),
		waitText("#status", "live"),
	))
	hidden, err := chromedp.Run(bob, chromedp.Evaluate[bool](`document.getElementById("auth").hidden`))
	require.NoError(t, err)
	assert.True(t, hidden, "no sign-in form after a reload")

	require.NoError(t, chromedp.Do(ana, chromedp.Click(chromedp.CSS(`#rooms button[data-room="general"]`)), waitText("#messages", "are you there")))
	browsertest.Screenshot(t, ana, "chat-desktop")

	// History pages in as you scroll back.
	apiAs := func(handle string) *realtime.Client {
		resp := post(t, base, "/api/login", "", map[string]string{"handle": handle, "password": "password-" + handle}, nil)
		return dial(t, base, sessionToken(resp))
	}
	call(t, apiAs("ana"), "room.create", map[string]string{"name": "news"}, nil)
	bobAPI := apiAs("bob")
	enter(t, bobAPI, "news")
	for i := range 70 {
		say(t, bobAPI, "news", fmt.Sprint("old news ", i))
	}
	require.NoError(t, chromedp.Do(ana,
		chromedp.Click(chromedp.CSS(`#rooms button[data-room="news"]`)),
		waitText("#messages", "old news 69"),
	))
	shown, err := chromedp.Run(ana, chromedp.Evaluate[int](`document.querySelectorAll("#messages li[data-id]").length`))
	require.NoError(t, err)
	assert.Equal(t, 50, shown, "the newest page first")
	require.NoError(t, chromedp.Do(ana,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("messages").scrollTop = 0; true`))
			return err
		}),
		waitText("#messages", "old news 0"),
		waitText("#messages", "The beginning of the conversation."),
	))
}

func TestChatOnPhone(t *testing.T) {
	base := startApp(t, testConfig())
	ana := signUp(t, base, "ana", "Ana María")
	bob := signUp(t, base, "bob", "Bob")
	require.NoError(t, chromedp.Do(bob, sendText("Hi! How is the release going? The long messages wrap at phone width instead of running off the screen.")))
	require.NoError(t, chromedp.Do(ana,
		chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
		waitText("#messages", "release going"),
		sendText("All green, shipping at 5 @bob"),
		waitText("#online", "@bob"),
	))
	// The message column is the whole width; the drawers are off screen
	// (once they have slid away: the viewport just changed).
	require.NoError(t, chromedp.Do(ana, waitJS(`document.getElementById("nav").getBoundingClientRect().right <= 0 &&
		document.getElementById("people").getBoundingClientRect().left >= innerWidth`)))
	layout, err := chromedp.Run(ana, chromedp.Evaluate[map[string]float64](`(() => {
		const r = (id) => document.getElementById(id).getBoundingClientRect();
		return {width: innerWidth, messages: r("messages").width, left: r("messages").left, navRight: r("nav").right, peopleLeft: r("people").left,
			scroll: document.documentElement.scrollWidth};
	})()`))
	require.NoError(t, err)
	assert.Equal(t, 390.0, layout["width"])
	assert.Equal(t, 390.0, layout["messages"], "the message column is full width: %v", layout)
	assert.Equal(t, 0.0, layout["left"])
	assert.LessOrEqual(t, layout["navRight"], 0.0, "the rooms drawer is closed")
	assert.GreaterOrEqual(t, layout["peopleLeft"], 390.0, "the people drawer is closed")
	assert.Equal(t, 390.0, layout["scroll"], "nothing scrolls sideways")
	browsertest.Screenshot(t, ana, "chat-phone")

	// The rooms drawer opens from the menu button and closes with Escape.
	require.NoError(t, chromedp.Do(ana,
		chromedp.Click(chromedp.CSS("#open-nav")),
		waitJS(`document.getElementById("nav").getBoundingClientRect().left >= 0`),
	))
	browsertest.Screenshot(t, ana, "chat-phone-rooms")
	require.NoError(t, chromedp.Do(ana,
		chromedp.KeyEvent("\x1b"),
		waitJS(`document.getElementById("nav").getBoundingClientRect().right <= 0`),
		chromedp.Click(chromedp.CSS("#open-people")),
		waitJS(`document.getElementById("people").getBoundingClientRect().right <= 390`),
	))
	browsertest.Screenshot(t, ana, "chat-phone-people")
}

func TestSignInPageErrors(t *testing.T) {
	base := startApp(t, testConfig())
	register(t, base, "ana")
	ctx := browsertest.New(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.SendKeys(chromedp.CSS("#login-handle"), "ana"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "not her password"),
		chromedp.Click(chromedp.CSS("#login-form button")),
		waitText("#login-error", "wrong handle or password"),
		chromedp.Click(chromedp.CSS("#tab-register")),
		chromedp.SendKeys(chromedp.CSS("#reg-handle"), "Ana Maria!"),
		chromedp.SendKeys(chromedp.CSS("#reg-name"), "Ana"),
		chromedp.SendKeys(chromedp.CSS("#reg-email"), "ana2@example.com"),
		chromedp.SendKeys(chromedp.CSS("#reg-password"), "long enough"),
		chromedp.Click(chromedp.CSS("#register-form button[type=submit]")),
		waitText("#reg-handle-error", "lowercase letters a-z"),
	))
	browsertest.Screenshot(t, ctx, "register-error-phone")
}
