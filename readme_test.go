package rtkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReadmeCompiles builds every complete Go program (a block that starts
// with "package main") in README.md, so the README never shows code that
// does not compile.
func TestReadmeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with the go command")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(package main\n.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go program")
	}
	for i, b := range blocks {
		// Inside the module, so the program imports this checkout; "_"
		// keeps ./... patterns from seeing it.
		dir, err := os.MkdirTemp(".", "_readme")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, "main.go"), b[1], 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("go", "vet", "./"+dir).CombinedOutput()
		if err != nil {
			t.Errorf("README program %d does not build: %v\n%s", i+1, err, out)
		}
	}
}
