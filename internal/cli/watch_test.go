package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs persysctl until stop is called; stop returns its exit
// code.
func (c *cluster) background(t *testing.T, out, errb *syncBuffer, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"--config", c.config}, args...), Streams{In: strings.NewReader(""), Out: out, Err: errb},
			func() time.Time { return fixedNow })
	}()
	return func() int { cancel(); return <-done }
}

// rowWith reports whether out has a line holding every one of cells.
func rowWith(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		ok := true
		for _, c := range cells {
			found := false
			for _, f := range fields {
				found = found || f == c
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

// get --watch prints the table, then a row per change in the same
// columns, with DELETED for a deletion; events --follow prints new events
// as they come.
func TestGetWatchAndEventsFollow(t *testing.T) {
	shared.Forget(t, "clw")
	c := startCluster(t)
	var wOut, wErr, eOut, eErr syncBuffer
	stopWatch := c.background(t, &wOut, &wErr, "get", "workloads", "-l", "suite=clwatch", "--watch")
	stopEvents := c.background(t, &eOut, &eErr, "events", "--follow", "--workload", "clw")
	eventually.Eventually(t, "watch header", time.Minute, eventually.True(func() bool { return strings.Contains(wOut.String(), "NAME") }))

	m := strings.Replace(named("clw"), "  name: clw\n", "  name: clw\n  labels: {suite: clwatch}\n", 1)
	expect(t, c.persysctl(t, m, "apply", "-f", "-", "--wait"), 0, []string{"workload/clw created"}, nil)
	eventually.Eventually(t, "a RUNNING row", time.Minute, eventually.True(func() bool { return rowWith(wOut.String(), "clw", "RUNNING", "node-1") }))
	expect(t, c.persysctl(t, "", "delete", "workload", "clw", "--wait"), 0, nil, nil)
	eventually.Eventually(t, "a DELETED row", time.Minute, eventually.True(func() bool { return rowWith(wOut.String(), "clw", "DELETED") }))
	eventually.Eventually(t, "a Placed event", time.Minute, eventually.True(func() bool { return rowWith(eOut.String(), "Placed", "clw") }))

	if code := stopWatch(); code != 0 {
		t.Errorf("watch exit code %d: %s", code, wErr.String())
	}
	if code := stopEvents(); code != 0 {
		t.Errorf("events exit code %d: %s", code, eErr.String())
	}
	t.Logf("watch:\n%s\nevents:\n%s", wOut.String(), eOut.String())
	lines := strings.Split(strings.TrimSpace(wOut.String()), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "STATE") {
		t.Errorf("first line %q, want the table header", lines[0])
	}
	if !strings.HasPrefix(strings.TrimSpace(eOut.String()), "AGE") {
		t.Errorf("events output does not start with the header:\n%s", eOut.String())
	}
}

func TestWatchFlagsRefused(t *testing.T) {
	c := startCluster(t)
	expect(t, c.persysctl(t, "", "get", "workload", "x", "--watch"), 1, nil, []string{"--watch lists a kind"})
	expect(t, c.persysctl(t, "", "get", "workloads", "--watch", "-o", "json"), 1, nil, []string{"--watch prints tables only"})
	expect(t, c.persysctl(t, "", "events", "--follow", "--limit", "5"), 1, nil, []string{"--limit does not apply to --follow"})
}

// get nodes --watch rows read as get nodes rows do (allocated/capacity).
func TestGetNodesWatchMatchesGet(t *testing.T) {
	c := startCluster(t)
	r := c.persysctl(t, "", "get", "nodes")
	var want []string
	for _, line := range strings.Split(r.out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "node-1" {
			want = f
		}
	}
	if r.code != 0 || len(want) < 5 || !strings.Contains(want[2], "/") {
		t.Fatalf("get nodes: exit %d\n%s", r.code, r.out)
	}
	var out, errb syncBuffer
	stop := c.background(t, &out, &errb, "get", "nodes", "--watch")
	eventually.Eventually(t, "node-1's row", time.Minute, eventually.True(func() bool { return rowWith(out.String(), "node-1") }))
	if code := stop(); code != 0 {
		t.Fatalf("watch exit %d: %s", code, errb.String())
	}
	// ID, STATE, CPU, MEM and RUNTIMES as get printed them.
	if !rowWith(out.String(), want[:5]...) {
		t.Errorf("watch rows\n%s\nwant a row with %v", out.String(), want[:5])
	}
}
