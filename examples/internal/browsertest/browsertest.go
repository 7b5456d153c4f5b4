// Package browsertest starts headless Chromium for the examples' browser
// tests (through chromedp) and saves screenshots for people to look at.
//
// Without a Chromium on $PATH (or at $CHROMIUM) a test is skipped with the
// reason, unless RTKIT_REQUIRE_BROWSER=1 (as in CI), where it fails.
//
// Screenshots go to the directory $RTKIT_SCREENSHOTS names; when it is
// unset they go to a per-test temporary directory and are deleted with it.
// Run, for example:
//
//	RTKIT_SCREENSHOTS=/tmp/shots go test -run Browser ./examples/chat
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds every browser a test starts.
const Timeout = 90 * time.Second

// New starts a headless Chromium for t and returns a context for its first
// tab. The browser ends when t does. Use [Tab] for more tabs in the same
// browser (shared cookies) and New again for a separate user.
func New(t testing.TB) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("RTKIT_REQUIRE_BROWSER") == "1" {
			t.Fatal("browsertest: no Chromium found (RTKIT_REQUIRE_BROWSER=1); apt-get install chromium")
		}
		t.Skip("browsertest: no Chromium found; apt-get install chromium (or set CHROMIUM) to run the browser tests")
	}
	// The flags keep Chromium off the network: this machine's closed
	// network refuses its background connections.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	t.Cleanup(func() {
		cancel()
		cancelCtx()
		cancelAlloc()
	})
	return ctx
}

// Tab opens another tab in the browser of ctx (from [New]); it shares the
// first tab's cookies and storage.
func Tab(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	return tab
}

// Screenshot saves the whole page of ctx as NAME.png in [Dir] and logs
// where; a failure to take it is logged, not fatal.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("browsertest: screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(Dir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("browsertest: screenshot %s: %v", name, err)
		return
	}
	t.Logf("browsertest: screenshot saved to %s", path)
}

// Dir is where [Screenshot] writes: $RTKIT_SCREENSHOTS (created if
// missing), or else a temporary directory of t's.
func Dir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("RTKIT_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			return dir
		}
	}
	return t.TempDir()
}

// WaitText waits until the rendered text (innerText) of the element sel
// (a CSS selector) contains want. It reads the text in the page, so that an
// element the page re-renders meanwhile is simply read again; a missing or
// hidden element reads as "".
func WaitText(sel, want string) chromedp.Action[chromedp.Void] {
	text := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := text(ctx, t)
			if err != nil {
				return chromedp.Void{}, err
			}
			if strings.Contains(got, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %q in %s (it has %q): %w", want, sel, got, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}
