// Package redact removes credentials from URLs and from error messages
// that quote them, so that clients can log their errors.
package redact

import (
	"regexp"
	"strings"
)

// Mask replaces every credential.
const Mask = "xxxxx"

var (
	// A query parameter whose name says it carries a credential.
	param = regexp.MustCompile(`(?i)([?&;](?:[a-z0-9_.-]*(?:token|secret|password|passwd|key|auth|sig|signature|jwt|session|credential)[a-z0-9_.-]*)=)[^&#\s"'<>]*`)
	// The password of a URL's userinfo.
	userinfo = regexp.MustCompile(`(//[^/?#\s:@"']*:)[^/?#\s@"']*@`)
)

// String returns s with the values of credential query parameters
// (token, access_token, api_key, password, ...) and userinfo passwords
// replaced by [Mask], wherever a URL appears in it.
func String(s string) string {
	if !strings.ContainsAny(s, "?&;@") {
		return s
	}
	s = param.ReplaceAllString(s, "${1}"+Mask)
	return userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
}

// Error returns err with its message passed through [String]; errors.Is
// and errors.As still see err's chain. It returns nil for nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := String(msg); red != msg {
		return &redacted{msg: red, err: err}
	}
	return err
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
