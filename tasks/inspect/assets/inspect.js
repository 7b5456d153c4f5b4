// The inspector's page script: live counts over SSE, the chart, and a
// refresh of lists and task pages when their counts move. Task data is
// only ever written with textContent or taken from server-escaped HTML.
(function () {
  "use strict";
  var prefix = document.body.dataset.prefix || "";
  var main = document.getElementById("main");
  var dot = document.getElementById("live");
  var chart = null;

  function drawChart(s) {
    var el = document.getElementById("chart");
    if (!el || typeof uPlot === "undefined") return;
    var data = [s.minutes, s.processed, s.failed];
    if (chart) { chart.setData(data); return; }
    chart = new uPlot({
      width: el.clientWidth || 320, height: 180,
      series: [{}, { label: "processed", stroke: "#2563eb", width: 2 }, { label: "failed", stroke: "#dc2626", width: 2 }],
      // space: at least 70px between the time labels' centres
      // ("12:45pm" is about 50px wide), so that at phone width they
      // neither overlap nor run together (uPlot's default is 50px).
      axes: [{ space: 70 }, { size: 40 }],
      // Counts: from 0 to a little above the largest, at least 1 (uPlot
      // would show 0–100 for a quiet hour and start above 0 otherwise).
      scales: { y: { range: function (u, min, max) { return [0, Math.max(1, Math.ceil(max * 1.1))]; } } },
    }, data, el);
    el.uplot = chart; // for the browser tests, and the console
    window.addEventListener("resize", function () { chart.setSize({ width: el.clientWidth || 320, height: 180 }); });
  }

  var seed = document.getElementById("chart-data");
  if (seed) drawChart(JSON.parse(seed.textContent));

  // counts remembers the last numbers shown, "queue|state" -> n.
  var counts = {};
  document.querySelectorAll("[data-count]").forEach(function (el) {
    counts[el.dataset.count] = el.textContent;
  });

  // refresh reloads the page's content in place, at most once a second.
  var refreshing = false, last = 0, again = null;
  function refresh() {
    if (refreshing || document.querySelector("#main input:checked")) return; // don't drop a selection
    var wait = last + 1000 - Date.now();
    if (wait > 0) {
      if (!again) again = setTimeout(function () { again = null; refresh(); }, wait);
      return;
    }
    last = Date.now();
    refreshing = true;
    fetch(location.href, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      refreshing = false;
      if (!html) return;
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("main");
      if (!fresh) return;
      main.replaceWith(fresh);
      main = fresh;
      if (chart) { chart.destroy(); chart = null; } // its element was replaced
      var seed = document.getElementById("chart-data");
      if (seed) drawChart(JSON.parse(seed.textContent));
      bind();
    }).catch(function () { refreshing = false; });
  }

  function update(s) {
    var changed = false, rows = false;
    (s.queues || []).forEach(function (q) {
      if (!document.querySelector('tr[data-queue="' + CSS.escape(q.name) + '"]') && main.dataset.page === "overview") rows = true;
      Object.keys(q.counts).forEach(function (st) {
        var key = q.name + "|" + st, n = String(q.counts[st]);
        if (counts[key] !== undefined && counts[key] !== n) changed = true;
        counts[key] = n;
        document.querySelectorAll('[data-count="' + CSS.escape(key) + '"]').forEach(function (el) { el.textContent = n; });
      });
    });
    drawChart(s);
    // The overview's running tasks and the lists move with the counts.
    if (rows || changed) refresh();
  }

  function bind() {
    var all = document.getElementById("all-box");
    if (all) all.addEventListener("change", function () {
      document.querySelectorAll('#bulk input[name="id"]').forEach(function (b) { b.checked = all.checked; });
    });
    document.querySelectorAll("button.danger").forEach(function (b) {
      b.addEventListener("click", function (e) { if (!confirm("Delete the selected tasks?")) e.preventDefault(); });
    });
  }
  bind();

  if (window.EventSource) {
    var es = new EventSource(prefix + "/events");
    es.addEventListener("open", function () { dot.className = "live on"; });
    es.addEventListener("error", function () { dot.className = "live off"; });
    es.addEventListener("counts", function (e) { update(JSON.parse(e.data)); });
  }
})();
