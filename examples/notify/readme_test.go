package main

import (
	"os"
	"testing"

	"github.com/rtkit/rtkit/examples/internal/readmetest"
	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/stretchr/testify/assert"
)

// runMainEnv makes the test binary run main instead of the tests, as the
// README's "go run" commands would.
const runMainEnv = "NOTIFY_TEST_RUN_MAIN"

// runMain runs main in a child process of TestReadmeCommands and reports
// whether it did.
func runMain() bool {
	if os.Getenv(runMainEnv) != "1" {
		return false
	}
	main()
	return true
}

// Every "go run ./examples/notify" command of both READMEs starts the app
// with its variables (on a free port, with this test's SMTP server for
// SMTP_ADDR, and a short BATCH_WINDOW); an event for an offline user ends
// as a mail there.
func TestReadmeCommands(t *testing.T) {
	for _, file := range []string{"README.md", "README.es.md"} {
		cmds := readmetest.Commands(t, file, "./examples/notify")
		assert.Len(t, cmds, 3, "%s: the commands", file)
		for _, c := range cmds {
			mail := smtptest.Start(t, smtptest.Options{})
			env := [][2]string{{runMainEnv, "1"}}
			_, smtp := c.Get("SMTP_ADDR")
			for _, kv := range c.Env {
				if kv[0] != "SMTP_ADDR" && kv[0] != "BATCH_WINDOW" {
					env = append(env, kv)
				}
			}
			env = append(env, [2]string{"BATCH_WINDOW", "10ms"})
			if smtp {
				env = append(env, [2]string{"SMTP_ADDR", mail.Addr})
			}
			base := readmetest.Start(t, os.Args[0], env).URL
			assert.Equal(t, sent{Stored: 1, Mail: 1}, post(t, base, "orders", "Order #9 shipped", "ada"), c.Line)
			if smtp {
				mail.WaitMail(t, "ada@example.com", "Order #9 shipped")
			}
		}
	}
}

// The variables both READMEs document are exactly those the app reads,
// and their commands set no others.
func TestReadmesDocumentTheEnvironment(t *testing.T) {
	readmetest.EnvTable(t, func(getenv func(string) string) { _, _ = loadConfig(getenv) })
}
