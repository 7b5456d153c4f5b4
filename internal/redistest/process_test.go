package redistest

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
)

func TestServerStart_portTaken(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	s := newServer(t.TempDir(), l.Addr().(*net.TCPAddr).Port, false)
	err = s.start()
	if !errors.Is(err, errExited) {
		t.Fatalf("start on a taken port = %v, want errExited", err)
	}
	// The error must carry redis-server's own account of what went wrong.
	if !strings.Contains(err.Error(), "already in use") {
		t.Errorf("error lacks redis-server's output: %v", err)
	}
	if s.proc != nil {
		t.Error("a failed start left a process behind")
	}
}

func TestPrefixFor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, want string }{
		{"TestX", "rtkit-test:TestX:"},
		{"TestX/sub_case#01", "rtkit-test:TestX/sub_case#01:"},
		{"TestX/{tag}*?[a]\\:b", "rtkit-test:TestX/_tag____a___b:"},
		{strings.Repeat("a", 100), "rtkit-test:" + strings.Repeat("a", 80) + ":"},
	} {
		got := prefixFor(tt.name)
		rest, ok := strings.CutPrefix(got, tt.want)
		if !ok || len(rest) != 9 || !strings.HasSuffix(rest, ":") {
			t.Errorf("prefixFor(%q) = %q, want %q + 8 hex digits + ':'", tt.name, got, tt.want)
		}
	}
}
