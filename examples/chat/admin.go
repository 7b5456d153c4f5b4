package main

import (
	"context"

	"github.com/rtkit/rtkit/realtime"
)

// settings answers "settings" {noMail}: the caller's own preferences.
func (a *app) settings(ctx context.Context, c *realtime.Call) (any, error) {
	u, err := a.caller(ctx, c)
	if err != nil {
		return nil, err
	}
	var req struct {
		NoMail *bool `json:"noMail"`
	}
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if req.NoMail != nil {
		u.NoMail = *req.NoMail
		if err := a.putUser(ctx, u); err != nil {
			return nil, err
		}
	}
	return map[string]bool{"noMail": u.NoMail}, nil
}

// adminUser is what admins see of a user.
type adminUser struct {
	Handle string `json:"handle"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Role   string `json:"role"`
	Banned bool   `json:"banned"`
	Online bool   `json:"online"`
}

// adminUsers answers "admin.users" (admins): every account.
func (a *app) adminUsers(ctx context.Context, c *realtime.Call) (any, error) {
	if _, err := a.admin(ctx, c); err != nil {
		return nil, err
	}
	users, err := a.store.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]adminUser, 0, len(users))
	for _, u := range users {
		n, _ := a.online(ctx, "user:"+u.Handle)
		out = append(out, adminUser{u.Handle, u.Name, u.Email, u.Role, u.Banned, n > 0})
	}
	return out, nil
}

// ban answers "admin.ban" {user, banned} (admins): a banned user cannot
// sign in, and their connections close at once.
func (a *app) ban(ctx context.Context, c *realtime.Call) (any, error) {
	me, err := a.admin(ctx, c)
	if err != nil {
		return nil, err
	}
	var req struct {
		User   string
		Banned bool
	}
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	if req.User == me.Handle {
		return nil, badRequest("you cannot ban yourself")
	}
	u, err := a.store.User(ctx, req.User)
	if err != nil {
		return nil, notFound("no such user")
	}
	u.Banned = req.Banned
	if err := a.putUser(ctx, u); err != nil {
		return nil, err
	}
	if u.Banned {
		a.log.Info("user banned", "user", u.Handle, "by", me.Handle)
		return nil, a.hub.Disconnect(ctx, u.Handle, "banned")
	}
	return nil, nil
}

// disconnect answers "admin.disconnect" {user} (admins): closes every
// connection of the user (their pages may reconnect).
func (a *app) disconnect(ctx context.Context, c *realtime.Call) (any, error) {
	if _, err := a.admin(ctx, c); err != nil {
		return nil, err
	}
	var req struct{ User string }
	if err := callData(c, &req); err != nil {
		return nil, err
	}
	return nil, a.hub.Disconnect(ctx, req.User, "disconnected by an admin")
}
