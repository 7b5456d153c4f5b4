package main

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The admin's way to the task inspector: the dashboard starts empty and
// says so, a mention of an offline user queues a mail, and the dashboard's
// link opens the inspector on the task, whose payload (what the user
// typed) shows as text. Members see neither the link nor the inspector.
func TestTaskInspectorInBrowser(t *testing.T) {
	cfg := testConfig()
	cfg.StatsEvery = 200 * 1e6 // 200ms
	base := startApp(t, cfg)
	ana := signUp(t, base, "ana", "Ana María") // admin
	require.NoError(t, chromedp.Do(ana,
		chromedp.WaitVisible(chromedp.CSS("#tasks-link")),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		chromedp.WaitVisible(chromedp.CSS("#feed-empty")),
		chromedp.WaitVisible(chromedp.CSS("#task-feed-empty")),
	))
	browsertest.Screenshot(t, ana, "dashboard-empty")

	register(t, base, "bob") // offline: a mention mails him
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#chat")),
		waitText("#status", "live"),
		sendText(`@bob <img src=x onerror="document.body.dataset.pwned=1"> is the new logo`),
		waitText("#messages", "is the new logo"),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#task-feed", "mail to bob: mention in #general — succeeded"),
		waitJS(`document.getElementById("task-feed-empty").hidden && document.getElementById("feed-empty").hidden`),
		waitText("#feed", "is the new logo"),
	))

	// The dashboard's link opens the inspector; the succeeded mail is on
	// its list and its page.
	// (Following the link by its href: a query racing a click's navigation
	// may hit the old page's context.)
	require.NoError(t, chromedp.Do(ana, chromedp.WaitVisible(chromedp.CSS("#tasks-link"))))
	href, err := chromedp.Run(ana, chromedp.Evaluate[string](`document.getElementById("tasks-link").href`))
	require.NoError(t, err)
	assert.Equal(t, base+"/admin/tasks/", href)
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(href),
		waitText("body", "Queues"),
		waitText("body", "default"),
	))
	browsertest.Screenshot(t, ana, "inspector")
	// The header links back to the chat.
	back, err := chromedp.Run(ana, chromedp.Evaluate[[]string](`[document.getElementById("back").href, document.getElementById("back").textContent]`))
	require.NoError(t, err)
	assert.Equal(t, []string{base + "/", "‹ Back to the chat"}, back)
	// Each count's right edge is its column header's.
	misaligned, err := chromedp.Run(ana, chromedp.Evaluate[[]string](countsAlignment))
	require.NoError(t, err)
	assert.Empty(t, misaligned, "counts sit under their headers")
	require.NoError(t, chromedp.Do(ana, chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile)))
	require.NoError(t, chromedp.Do(ana, waitJS(`document.documentElement.scrollWidth === 390`)), "nothing scrolls sideways at phone width")
	require.NoError(t, chromedp.Do(ana, waitJS(`(function () { var el = document.getElementById("chart"); return !!el.uplot && el.uplot.width === el.clientWidth; })()`)))
	overlaps, err := chromedp.Run(ana, chromedp.Evaluate[[]string](chartLabelOverlaps))
	require.NoError(t, err)
	assert.Empty(t, overlaps, "the chart's time labels don't overlap at phone width")
	browsertest.Screenshot(t, ana, "inspector-phone")
	require.NoError(t, chromedp.Do(ana,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/admin/tasks/queues/default/succeeded"),
		waitText("body", "email.send"),
	))
	// The list redraws itself live: read the link in the page rather than
	// click a node that may be gone.
	link, err := chromedp.Run(ana, chromedp.Evaluate[string](`[...document.querySelectorAll('a[href*="task?id="]')].find((a) => a.textContent.includes("email.send")).href`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(link),
		waitText("body", "Payload"),
		waitText("body", "is the new logo"),
	))
	pwned, err := chromedp.Run(ana, chromedp.Evaluate[bool](`"pwned" in document.body.dataset || document.querySelector("main img, pre img") !== null`))
	require.NoError(t, err)
	assert.False(t, pwned, "a payload is shown as text")
	// As its JSON text: "<" where the message has it, not "\u003c".
	payload, err := chromedp.Run(ana, chromedp.Evaluate[string](`document.querySelector("pre.json").textContent`))
	require.NoError(t, err)
	assert.Contains(t, payload, `@bob <img src=x onerror=\"document.body.dataset.pwned=1\"> is the new logo`)
	assert.NotContains(t, payload, `\u003c`)
	// The mail was sent before the inspector was first opened: the page
	// says why it has no events rather than just "none".
	require.NoError(t, chromedp.Do(ana,
		waitText("#no-events", "Events are not stored with tasks"),
		waitText("#no-attempts", "The store's own count is above: 1 of"),
	))
	browsertest.Screenshot(t, ana, "inspector-task")
	require.NoError(t, chromedp.Do(ana, chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile)))
	require.NoError(t, chromedp.Do(ana, waitJS(`document.documentElement.scrollWidth === 390`)), "nothing scrolls sideways at phone width")
	browsertest.Screenshot(t, ana, "inspector-task-phone")
	require.NoError(t, chromedp.Do(ana, chromedp.EmulateViewport(1280, 800)))

	// A member: no link, no feeds, and the inspector says why.
	bob := browsertest.New(t)
	require.NoError(t, chromedp.Do(bob,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.SendKeys(chromedp.CSS("#login-handle"), "bob"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "password-bob"),
		chromedp.Click(chromedp.CSS("#login-form button")),
		waitText("#status", "live"),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		chromedp.WaitVisible(chromedp.CSS("#tasks-note")),
	))
	hidden, err := chromedp.Run(bob, chromedp.Evaluate[[]bool](`["tasks-link", "outbox-link", "feed-empty", "task-feed-empty"].map((id) => document.getElementById(id).hidden)`))
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, true, true}, hidden, "tasks link, outbox link and the admins' empty notes are hidden")
	require.NoError(t, chromedp.Do(bob,
		chromedp.Navigate(base+"/admin/tasks/"),
		waitText("body", "the task inspector is for the chat's admins"),
	))
}

// countsAlignment lists the overview's count columns whose number's right
// edge isn't its header text's (more than a pixel apart).
const countsAlignment = `(function () {
	var out = [];
	var heads = document.querySelectorAll("table.counts thead th");
	document.querySelectorAll("table.counts tbody tr").forEach(function (tr) {
		tr.querySelectorAll("td[data-label]").forEach(function (td) {
			var th = heads[td.cellIndex], r = document.createRange();
			r.selectNodeContents(th);
			var want = r.getBoundingClientRect().right, got = td.querySelector("a").getBoundingClientRect().right;
			if (Math.abs(want - got) > 1) out.push(th.textContent + ": header ends at " + want + ", number at " + got);
		});
	});
	return out;
})()`

// chartLabelOverlaps lists the neighbouring time labels of the overview's
// chart (drawn on a canvas by uPlot) whose text boxes overlap or are
// less than minLabelGap pixels apart (closer, "1:50pm2:00pm" reads as one).
const minLabelGap = "12"

const chartLabelOverlaps = `(function () {
	var u = document.getElementById("chart").uplot, a = u.axes[0];
	var ctx = document.createElement("canvas").getContext("2d");
	ctx.font = a.font[0];
	var px = window.devicePixelRatio || 1, labels = [];
	a._splits.forEach(function (v, i) {
		var text = a._values[i];
		if (text == null || text === "") return;
		var w = Math.max.apply(null, String(text).split("\n").map(function (l) { return ctx.measureText(l).width / px; }));
		labels.push({ text: String(text), x: u.valToPos(v, "x"), w: w });
	});
	var out = [];
	for (var i = 1; i < labels.length; i++) {
		var p = labels[i - 1], q = labels[i];
		var gap = (q.x - q.w / 2) - (p.x + p.w / 2);
		if (gap < ` + minLabelGap + `) out.push(p.text + " and " + q.text + " are " + gap.toFixed(1) + "px apart");
	}
	return out;
})()`
