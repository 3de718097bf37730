package logfollow_test

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/logfollow"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// startTicker runs the ticker image (a numbered line every 100 ms) in a
// container of this test, removed when it ends.
func startTicker(t *testing.T) (*client.Client, string) {
	t.Helper()
	cli, tag := images.TickerImage(t)
	ctx := context.Background()
	name := fmt.Sprintf("persys-logfollow-test-%d", time.Now().UnixNano())
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: tag, Labels: map[string]string{"persys.test": "logfollow"}},
		Name:   name, HostConfig: &container.HostConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return cli, created.ID
}

// ticks parses "tick N" lines; it fails on any other line.
func ticks(t *testing.T, out string) []int {
	t.Helper()
	var ns []int
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			break // the rest of it is still coming
		}
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "tick "))
		if err != nil {
			t.Fatalf("unexpected line %q", line)
		}
		ns = append(ns, n)
	}
	return ns
}

// consecutive reports whether ns counts up by one (no gap, no repeat).
func consecutive(ns []int) bool {
	for i := 1; i < len(ns); i++ {
		if ns[i] != ns[i-1]+1 {
			return false
		}
	}
	return true
}

// follow runs Container in the background; stop cancels it and returns
// its error.
func follow(cli *client.Client, id string, f runtime.LogFollow) (*collector, func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{}
	done := make(chan error, 1)
	go func() { done <- logfollow.Container(ctx, cli, id, f, c.emit) }()
	return c, func() error { cancel(); return <-done }
}

func tailTicks(t *testing.T, cli *client.Client, id string) []int {
	t.Helper()
	var c collector
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A tail alone: the follow part is cancelled as soon as the tail came.
	f := runtime.LogFollow{TailBytes: 1 << 20, Started: nil}
	done := make(chan error, 1)
	go func() { done <- logfollow.Container(ctx, cli, id, f, c.emit) }()
	eventually.Eventually(t, "the tail", 30*time.Second, func() (bool, string) { return len(ticks(t, c.String())) > 0, c.String() })
	cancel()
	<-done
	return ticks(t, c.String())
}

func TestContainerFollowTailThenNewLines(t *testing.T) {
	cli, id := startTicker(t)
	eventually.Eventually(t, "ten ticks", 30*time.Second, func() (bool, string) {
		ns := tailTicks(t, cli, id)
		return ns[len(ns)-1] >= 10, fmt.Sprint(ns)
	})
	// Idle engine connections keep goroutines of their own: count without.
	_ = cli.Close()
	before := goruntime.NumGoroutine()
	// 24 bytes hold the last three "tick NN\n" lines whole.
	c, stop := follow(cli, id, runtime.LogFollow{TailBytes: 24})
	var startedAt int
	eventually.Eventually(t, "the tail", 30*time.Second, func() (bool, string) {
		ns := ticks(t, c.String())
		if len(ns) > 0 {
			startedAt = ns[len(ns)-1]
		}
		return len(ns) > 0, c.String()
	})
	eventually.Eventually(t, "ten lines printed after the follow began", 60*time.Second, func() (bool, string) {
		ns := ticks(t, c.String())
		return ns[len(ns)-1] >= startedAt+10, fmt.Sprint(ns)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ns := ticks(t, c.String())
	if !consecutive(ns) {
		t.Fatalf("ticks not in order without gaps or repeats: %v", ns)
	}
	if ns[0] == 1 || len(ns) < 11 {
		t.Fatalf("the tail of 24 bytes sent from tick %d (%d ticks): %v", ns[0], len(ns), ns)
	}
	// Cancelling ends every goroutine of the follow (the engine's stream
	// is closed with it).
	eventually.Eventually(t, "the follow's goroutines to end", 30*time.Second, func() (bool, string) {
		_ = cli.Close()
		n := goruntime.NumGoroutine()
		return n <= before, fmt.Sprintf("%d goroutines, %d before", n, before)
	})
}

func TestContainerFollowSince(t *testing.T) {
	cli, id := startTicker(t)
	var seen []int
	eventually.Eventually(t, "five ticks", 30*time.Second, func() (bool, string) {
		seen = tailTicks(t, cli, id)
		return seen[len(seen)-1] >= 5, fmt.Sprint(seen)
	})
	since := time.Now()
	c, stop := follow(cli, id, runtime.LogFollow{Since: since})
	eventually.Eventually(t, "five ticks since", 60*time.Second, func() (bool, string) {
		ns := ticks(t, c.String())
		return len(ns) >= 5, fmt.Sprint(ns)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ns := ticks(t, c.String())
	if !consecutive(ns) || ns[0] <= seen[len(seen)-1] {
		t.Fatalf("since %s sent %v; tick %d was printed before it", since.Format(time.RFC3339Nano), ns, seen[len(seen)-1])
	}
}
