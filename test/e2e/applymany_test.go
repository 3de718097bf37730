package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// manyManifests writes one file that holds a workload document per name,
// separated by ---; broken names the one whose image is left empty.
func (c *cluster) manyManifests(file string, names []string, broken string) string {
	c.t.Helper()
	var b strings.Builder
	b.WriteString("# several workloads in one file\n")
	for _, n := range names {
		image := c.image
		if n == broken {
			image = `""`
		}
		fmt.Fprintf(&b, `---
kind: Workload
metadata:
  name: %s
spec:
  type: container
  container:
    image: %s
    labels: {e2e.cluster: %s}
  resources:
    cpu: 100m
    memory: 32Mi
`, n, image, c.nodeID)
	}
	path := filepath.Join(c.dir, file)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// TestApplyManyDocuments: one persysctl apply -f of a file with several
// workloads creates them all and waits until each runs; a file with one
// invalid document is refused whole, naming the document, and creates
// nothing.
func TestApplyManyDocuments(t *testing.T) {
	c := newCluster(t)
	var names []string
	for i := range 3 {
		names = append(names, fmt.Sprintf("many-%d-%s", i, c.nodeID))
	}

	bad := names[:2]
	out := c.ctlRefused(t, c.manyManifests("bad.yaml", bad, bad[1]))
	if !strings.Contains(out, "documents[1]") {
		t.Fatalf("refusal does not name documents[1]:\n%s", out)
	}
	for _, n := range bad {
		if _, ok := c.getWorkload(n); ok {
			t.Fatalf("%s exists after its file was refused", n)
		}
	}

	out = c.mustCtl("apply", "-f", c.manyManifests("good.yaml", names, ""), "--wait", "--timeout", "2m")
	for _, n := range names {
		if !strings.Contains(out, "workload/"+n+" created") {
			t.Errorf("output lacks workload/%s created:\n%s", n, out)
		}
		v, ok := c.getWorkload(n)
		if !ok || v.Status.State != "RUNNING" {
			t.Errorf("%s after apply --wait: %q, want RUNNING", n, v.Status.State)
		}
		if got := c.runningContainer(n); got.Labels["persys.revision"] != "1" {
			t.Errorf("%s: container revision %q, want 1", n, got.Labels["persys.revision"])
		}
	}

	// The same file again changes nothing.
	out = c.mustCtl("apply", "-f", filepath.Join(c.dir, "good.yaml"))
	if got := strings.Count(out, " unchanged"); got != len(names) {
		t.Fatalf("re-apply: %d unchanged lines, want %d:\n%s", got, len(names), out)
	}

	for _, n := range names {
		c.mustCtl("delete", "workload", n, "--wait")
	}
	c.waitFor("containers removed", 60*time.Second, func() bool {
		for _, n := range names {
			if len(c.containers(n)) != 0 {
				return false
			}
		}
		return true
	})
}
