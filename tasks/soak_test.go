package tasks

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// The soak test: two worker processes (this test binary, run again as
// TestSoakWorker) on a private Redis that is paused three times past the
// clients' read timeout while tasks are enqueued and run, and one of the
// workers is killed (SIGKILL) midway. Every task must succeed, and the
// handler runs not followed by a recorded success must be exactly the
// tasks in flight on the killed worker: no duplicate without a crash.
//
// By default (and in CI) it runs 2,000 tasks; -soak runs 20,000, and
// -soak.tasks=N any number. -short skips it.
var (
	soakLong  = flag.Bool("soak", false, "tasks: run the soak test with 20,000 tasks")
	soakTasks = flag.Int("soak.tasks", 0, "tasks: number of tasks of the soak test (default 2,000, or 20,000 with -soak)")
)

// Environment of a TestSoakWorker process.
const (
	soakEnvAddr = "RTKIT_TASKS_SOAK_ADDR" // the Redis address; unset: not a worker
	soakEnvNode = "RTKIT_TASKS_SOAK_NODE" // the worker's node name
	soakEnvLog  = "RTKIT_TASKS_SOAK_LOG"  // the file of its handler runs
)

const (
	soakPrefix = "soak:"
	soakLease  = 2 * time.Second
	soakKeep   = 1 << 20
)

// TestSoakWorker is a soak test worker process: it runs tasks until its
// standard input closes, appending "<task ID>\n" to its log as each
// handler starts. Run by TestSoak; skipped otherwise.
func TestSoakWorker(t *testing.T) {
	addr := os.Getenv(soakEnvAddr)
	if addr == "" {
		t.Skip("a TestSoak worker process; runs only under TestSoak")
	}
	log, err := os.OpenFile(os.Getenv(soakEnvLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	defer log.Close()
	client := pausingClient(t, addr)
	s := newRedisStore(t, client, soakPrefix, storeConfig{keep: soakKeep})
	r := NewRunner(Options{Store: s, Node: os.Getenv(soakEnvNode), Concurrency: 20, LeaseTTL: soakLease, Logger: quiet})
	Handle(r, "soak", func(ctx context.Context, j *Job[int]) error {
		if _, err := log.WriteString(j.ID + "\n"); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	require.NoError(t, r.Run(ctx))
}

// soakWorker is a running TestSoakWorker process.
type soakWorker struct {
	node  string
	log   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   strings.Builder
}

func startSoakWorker(t *testing.T, addr, node string) *soakWorker {
	t.Helper()
	w := &soakWorker{node: node, log: filepath.Join(t.TempDir(), node+".log")}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestSoakWorker$", "-test.count=1")
	w.cmd.Env = append(os.Environ(), soakEnvAddr+"="+addr, soakEnvNode+"="+node, soakEnvLog+"="+w.log)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	var err error
	w.stdin, err = w.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, w.cmd.Start())
	t.Cleanup(func() {
		w.stdin.Close()
		if err := w.cmd.Wait(); err != nil && !w.cmd.ProcessState.Exited() {
			return // killed
		} else if err != nil {
			t.Errorf("worker %s: %v\n%s", node, err, w.out.String())
		}
	})
	return w
}

// runs returns the IDs of the handler runs the worker logged, in order.
func (w *soakWorker) runs(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(w.log)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ids = append(ids, sc.Text())
	}
	require.NoError(t, sc.Err())
	return ids
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: runs without -short (2,000 tasks; -soak for 20,000)")
	}
	if os.Getenv(soakEnvAddr) != "" {
		t.Skip("in a worker process")
	}
	n := 2000
	if *soakLong {
		n = 20000
	}
	if *soakTasks > 0 {
		n = *soakTasks
	}
	ctx := context.Background()
	srv := redistest.StartServer(t)
	s := newRedisStore(t, pausingClient(t, srv.Addr()), soakPrefix, storeConfig{keep: soakKeep})
	r := newRunner(t, s, Options{}, true)
	victim := startSoakWorker(t, srv.Addr(), "victim")
	survivor := startSoakWorker(t, srv.Addr(), "survivor")
	start := time.Now()

	// Enqueue from 20 goroutines, each at most 1,000 tasks a second.
	var enqueued atomic.Int64
	var wg sync.WaitGroup
	const senders = 20
	for g := range senders {
		wg.Go(func() {
			for i := g; i < n; i += senders {
				if _, err := r.Enqueue(ctx, "soak", i); !assert.NoError(t, err) {
					return
				}
				enqueued.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	succeeded := func() int {
		c, err := r.Counts(ctx)
		if err != nil {
			return -1
		}
		return c[DefaultQueue][Succeeded]
	}
	waitFor := func(cond func() bool, what string) {
		eventually(t, 2*time.Minute, cond, what)
	}

	// Three pauses past the read timeout, and the kill between the second
	// and the third.
	var inFlight []string
	for i := range 3 {
		at := n * (i + 1) / 5
		waitFor(func() bool { return succeeded() >= at }, fmt.Sprintf("%d tasks succeeded", at))
		srv.Pause(t)
		time.Sleep(400 * time.Millisecond)
		srv.Resume(t)
		t.Logf("paused Redis for 400ms at %d tasks succeeded (%d enqueued)", at, enqueued.Load())
		if i == 1 {
			waitFor(func() bool { return succeeded() >= n/2 && len(victim.runs(t)) > 0 }, "half the tasks succeeded")
			require.NoError(t, victim.cmd.Process.Kill())
			_ = victim.cmd.Wait()
			page, err := r.List(ctx, ListOptions{State: Active, Limit: 1000})
			require.NoError(t, err)
			for _, task := range page.Tasks {
				if task.Worker == victim.node {
					inFlight = append(inFlight, task.ID)
				}
			}
			t.Logf("killed the victim at %d tasks succeeded: %d tasks active on it", succeeded(), len(inFlight))
		}
	}
	wg.Wait()
	waitFor(func() bool { return succeeded() == n }, "every task succeeded")

	// Every task succeeded once; every handler run that did not lead to
	// its success was on the victim, of a task it had in flight.
	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[State]int{Succeeded: n, Pending: 0, Scheduled: 0, Active: 0, Retry: 0, Dead: 0, Cancelled: 0}, c[DefaultQueue])
	final := make(map[string]*Task, n)
	for cursor := ""; ; {
		page, err := r.List(ctx, ListOptions{State: Succeeded, Limit: 1000, Cursor: cursor})
		require.NoError(t, err)
		for _, task := range page.Tasks {
			final[task.ID] = task
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	require.Len(t, final, n)
	vr, sr := victim.runs(t), survivor.runs(t)
	runs := make(map[string]int, n)
	for _, id := range append(vr, sr...) {
		runs[id]++
	}
	// The victim's runs it never recorded, and the tasks its handler had
	// started among those it held at the kill.
	unrecorded, lostOnVictim, started := len(vr)+len(sr)-n, 0, 0
	for _, id := range vr {
		if final[id].Worker != victim.node {
			lostOnVictim++
		}
	}
	for _, id := range inFlight {
		if slices.Contains(vr, id) {
			started++
		}
	}
	for id, k := range runs {
		if k > 1 && !assert.Contains(t, inFlight, id, "task %s ran %d times without being in flight at the kill", id, k) {
			break
		}
	}
	t.Logf("soak: %d tasks in %v, 2 worker processes, 3 pauses of 400ms (read timeout 100ms), 1 SIGKILL: "+
		"%d handler runs (victim %d, survivor %d), %d not followed by a recorded success; %d tasks in flight on the victim at the kill (%d claimed, %d of them started)",
		n, time.Since(start).Round(time.Millisecond), len(vr)+len(sr), len(vr), len(sr), unrecorded, started, len(inFlight), started)
	assert.Equal(t, started, unrecorded, "handler runs not followed by a recorded success == tasks in flight at the kill: no duplicate without a crash")
	assert.Equal(t, lostOnVictim, unrecorded, "every unrecorded run was the victim's")
	assert.Len(t, runs, n, "every task ran")
}
