package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sessions are signed tokens, "<name>.<expiry>.<hmac>": the first version
// of the app lets users pick a name, and the token proves to the hub (on
// any replica) that the server handed it out.

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

var errBadToken = errors.New("chat: invalid or expired session")

const sessionTTL = 24 * time.Hour

func signToken(secret []byte, name string, now time.Time) string {
	payload := name + "." + strconv.FormatInt(now.Add(sessionTTL).Unix(), 10)
	return payload + "." + mac(secret, payload)
}

func verifyToken(secret []byte, tok string, now time.Time) (string, error) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return "", errBadToken
	}
	payload, sig := tok[:i], tok[i+1:]
	if !hmac.Equal([]byte(sig), []byte(mac(secret, payload))) {
		return "", errBadToken
	}
	name, exp, ok := strings.Cut(payload, ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || now.Unix() > unix || !validName.MatchString(name) {
		return "", errBadToken
	}
	return name, nil
}

func mac(secret []byte, payload string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// tokenExpiry returns when a token (already verified) expires.
func tokenExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	unix, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(unix, 0)
}
