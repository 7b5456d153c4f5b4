package main

import (
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"

	"github.com/rtkit/rtkit"
)

// The outbox: without SMTP_ADDR, mails are logged and kept on a backplane
// topic whose history holds the last outboxSize of them, so that the
// /outbox page of every replica (sharing a Redis backplane) shows the
// same mails, and a restart of the in-memory app forgets them.

const (
	outboxTopic = "mail:outbox"
	outboxSize  = 100
)

// outbox is the mailer without an SMTP server.
type outbox struct {
	bp   rtkit.Backplane
	from *mail.Address
	log  *slog.Logger
}

// outboxEntry is one kept mail.
type outboxEntry struct {
	From string `json:"from"`
	email
}

// Send logs the recipient and subject (not the body) and keeps e.
func (o *outbox) Send(ctx context.Context, e *email) error {
	data, err := json.Marshal(outboxEntry{From: o.from.String(), email: *e})
	if err != nil {
		return err
	}
	if _, err := o.bp.Publish(ctx, outboxTopic, data, rtkit.PublishOptions{}); err != nil {
		return err
	}
	o.log.Info("mail kept in the outbox (no SMTP_ADDR)", "to", e.To, "subject", e.Subject)
	return nil
}

// outboxPage lists the kept mails, newest first, to admins: they are
// other users' mail.
func (a *app) outboxPage(w http.ResponseWriter, r *http.Request) {
	u, _, err := a.session(r)
	if err != nil {
		http.Error(w, "sign in to the chat first", http.StatusUnauthorized)
		return
	}
	if u.Role != roleAdmin {
		http.Error(w, "the outbox is for admins", http.StatusForbidden)
		return
	}
	hist, err := a.bp.History(r.Context(), outboxTopic, rtkit.HistoryOptions{Limit: outboxSize})
	if err != nil {
		a.log.Warn("reading the outbox", "err", err)
		http.Error(w, "the outbox is unavailable", http.StatusServiceUnavailable)
		return
	}
	mails := make([]outboxEntry, 0, len(hist.Messages))
	for _, m := range slices.Backward(hist.Messages) {
		var e outboxEntry
		if json.Unmarshal(m.Data, &e) == nil {
			mails = append(mails, e)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	err = outboxTemplate.Execute(w, struct {
		SMTP  bool
		Mails []outboxEntry
	}{a.cfg.SMTPAddr != "", mails})
	if err != nil {
		a.log.Warn("rendering the outbox", "err", err)
	}
}

// html/template escapes every value for its context.
var outboxTemplate = template.Must(template.New("outbox").Parse(`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>rtkit chat — outbox</title>
  <link rel="stylesheet" href="/style.css">
  <link rel="stylesheet" href="/dashboard.css">
</head>
<body>
  <main class="dash">
    <header>
      <h1>Outbox</h1>
      <a href="/dashboard.html">back to the dashboard</a>
    </header>
    {{- if .SMTP}}
    <p class="note">Mail goes to the SMTP server (SMTP_ADDR); only mails kept before it was set show here.</p>
    {{- else}}
    <p class="note">No SMTP_ADDR is set: the mails the chat would send are kept here, the last 100.</p>
    {{- end}}
    <ol id="mails" class="mails">
    {{- range .Mails}}
      <li class="mail">
        <dl>
          <dt>To</dt><dd class="to">{{.To}}</dd>
          <dt>From</dt><dd>{{.From}}</dd>
          <dt>Subject</dt><dd class="subject">{{.Subject}}</dd>
          <dt>Date</dt><dd><time datetime="{{.Date.Format "2006-01-02T15:04:05Z07:00"}}">{{.Date.Format "2 Jan 2006 15:04:05 MST"}}</time></dd>
        </dl>
        <pre class="body">{{.Body}}</pre>
      </li>
    {{- else}}
      <li class="empty">No mail yet.</li>
    {{- end}}
    </ol>
  </main>
</body>
</html>
`))
