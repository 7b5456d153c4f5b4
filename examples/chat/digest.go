package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

// Mail notifications. A mention or a direct message for a user who is
// offline (in no page on any replica: nobody present in their "user:"
// topic) is pushed onto the user's pending list in the store, and an
// "email.digest" task is enqueued for the end of the current batch window
// (MailBatch), unique per user and window. When it runs, on any replica,
// it turns everything pending into one mail (an "email.send" task, retried
// on SMTP failures) and drops what it mailed. A notification that lands
// while a digest runs stays pending for the next window's digest, which
// its own enqueue created: nothing is lost, and nothing is mailed twice
// (the mail task is unique per first notification).

const digestTask = "email.digest"

// digestJob is an "email.digest" task's payload.
type digestJob struct {
	User string `json:"user"`
}

// notifyOffline queues p for handle's next digest if they are offline and
// want mail.
func (a *app) notifyOffline(ctx context.Context, handle string, p pending) {
	u, err := a.profile(ctx, handle)
	if err != nil || u.NoMail || u.Banned {
		return
	}
	n, err := a.online(ctx, "user:"+handle)
	if err != nil {
		a.log.Warn("notifications: reading presence; no mail", "user", handle, "err", err)
		return
	}
	if n > 0 {
		return // the page showed it
	}
	if err := a.store.PushPending(ctx, handle, p); err != nil {
		a.log.Error("notifications: storing; no mail", "user", handle, "err", err)
		return
	}
	window := a.cfg.MailBatch
	bucket := time.Now().UnixNano() / int64(window)
	due := time.Unix(0, (bucket+1)*int64(window))
	_, err = a.tasks.Enqueue(ctx, digestTask, digestJob{User: handle},
		tasks.Unique(uniqueKey("digest", handle, strconv.FormatInt(bucket, 10)), 2*window),
		tasks.Delay(time.Until(due)), tasks.MaxAttempts(a.cfg.MailAttempts), tasks.WithBackoff(a.cfg.MailRetry))
	if err != nil && !errors.Is(err, tasks.ErrDuplicate) {
		a.log.Error("notifications: enqueueing the digest", "user", handle, "err", err)
	}
}

// sendDigest is the "email.digest" handler.
func (a *app) sendDigest(ctx context.Context, j *tasks.Job[digestJob]) error {
	handle := j.Payload.User
	items, err := a.store.Pending(ctx, handle)
	if err != nil || len(items) == 0 {
		return err
	}
	u, err := a.store.User(ctx, handle)
	if errors.Is(err, errNotFound) || (err == nil && u.NoMail) {
		return a.store.DropPending(ctx, handle, len(items))
	}
	if err != nil {
		return err
	}
	e := a.digestMail(u, items)
	err = a.enqueueMail(ctx, uniqueKey("mail", handle, items[0].Room, items[0].ID), e)
	if err != nil && !errors.Is(err, tasks.ErrDuplicate) {
		return err
	}
	return a.store.DropPending(ctx, handle, len(items))
}

// link is the page's address of a message.
func (a *app) link(p pending) string {
	frag := "room=" + url.QueryEscape(p.Room)
	if strings.HasPrefix(p.Room, "dm:") {
		frag = "dm=" + url.QueryEscape(p.From) // the conversation with the sender
	}
	return strings.TrimRight(a.cfg.PublicURL, "/") + "/#" + frag + "&msg=" + url.QueryEscape(p.ID)
}

// where names the place of a notification: "#general" or "a direct message".
func where(p pending) string {
	if strings.HasPrefix(p.Room, "dm:") {
		return "a direct message"
	}
	return "#" + p.Room
}

// digestMail composes the mail of a user's pending notifications.
func (a *app) digestMail(u user, items []pending) *email {
	var subject string
	first := items[0]
	switch {
	case len(items) > 1:
		subject = fmt.Sprintf("%d new messages for you in the chat", len(items))
	case first.Kind == "dm":
		subject = fmt.Sprintf("@%s sent you a message", first.From)
	default:
		subject = fmt.Sprintf("@%s mentioned you in #%s", first.From, first.Room)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hi %s,\n\nwhile you were away:\n", u.Name)
	for _, p := range items {
		verb := "mentioned you in " + where(p)
		if p.Kind == "dm" {
			verb = "sent you a direct message"
		}
		fmt.Fprintf(&b, "\n@%s %s (%s):\n%s\n%s\n", p.From, verb, p.Time.UTC().Format("2 Jan 15:04 UTC"), quote(p.Text), a.link(p))
	}
	b.WriteString("\nYou get these mails when you are offline; turn them off in the chat's settings.\n")
	label := "mail to " + u.Handle + ": " + first.Kind + " in " + where(first)
	if len(items) > 1 {
		label = fmt.Sprintf("mail to %s: %d notifications", u.Handle, len(items))
	}
	return &email{MessageID: newMessageID(a.from), Date: time.Now(), To: u.Email, Subject: subject, Body: b.String(), Label: label}
}

// quote prefixes every line of text with "> ".
func quote(text string) string {
	return "> " + strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\n> ")
}
