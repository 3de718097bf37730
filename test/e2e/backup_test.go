package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupRestore is the operator's recovery path: `persys backup save`
// of a live cluster's etcd, `persys backup restore` into a new data dir,
// a scheduler started on it (embedded etcd) at the old address: every
// workload is back, and the agent, which kept running, reports it Running.
func TestBackupRestore(t *testing.T) {
	c := newCluster(t)
	names := []string{"bk-a-" + c.nodeID, "bk-b-" + c.nodeID}
	for _, n := range names {
		c.mustCtl("apply", "-f", c.writeFile(t, n+".yaml", c.smallManifest(n, "", "", "10m", "8Mi")), "--wait", "--timeout", "2m")
	}
	snap := filepath.Join(c.dir, "cluster.snapshot")
	// The store answers only the scheduler's certificate.
	out := c.run(c.persys, "backup", "save", snap, "--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","),
		"--etcd-ca", filepath.Join(c.pkiDir, "ca.crt"), "--etcd-cert", filepath.Join(c.pkiDir, "scheduler.crt"),
		"--etcd-key", filepath.Join(c.pkiDir, "scheduler.key"))
	if !strings.Contains(out, "saved "+snap) {
		t.Fatalf("backup save printed %q", out)
	}
	if _, err := c.ctl("get", "workloads"); err != nil {
		t.Fatal(err)
	}

	// The control plane is lost; the node keeps running its workloads.
	c.procs["gateway"].stop(t)
	c.procs["scheduler"].stop(t)
	restored := filepath.Join(c.dir, "restored")
	if out := c.run(c.persys, "backup", "restore", snap, "--data-dir", restored); !strings.Contains(out, "restored") {
		t.Fatalf("backup restore printed %q", out)
	}
	// A second restore into the same dir is refused, not merged.
	if out, err := runCmd(c.persys, "backup", "restore", snap, "--data-dir", restored); err == nil {
		t.Fatalf("a restore over an existing data dir passed:\n%s", out)
	}

	ca := filepath.Join(c.pkiDir, "ca.crt")
	cert := func(n string) []string {
		return []string{"--ca", ca, "--cert", filepath.Join(c.pkiDir, n+".crt"), "--key", filepath.Join(c.pkiDir, n+".key")}
	}
	c.start("scheduler-restored", append([]string{"scheduler", "--listen", c.schedAddr, "--data-dir", restored,
		"--secrets-key-file", filepath.Join(c.dir, "secrets.key"), "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--heartbeat-interval", "1s", "--lease-ttl", "4s"}, cert("scheduler")...)...)
	c.start("gateway-restored", append([]string{"gateway", "--listen", c.gwAddr, "--scheduler", c.schedAddr,
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, cert("gateway")...)...)
	delete(c.procs, "scheduler") // stopped on purpose: waitFor must not fail on it
	delete(c.procs, "gateway")

	for _, n := range names {
		c.waitFor(n+" back and running", 2*time.Minute, func() bool {
			v, ok := c.getWorkload(n)
			return ok && v.Status.State == "RUNNING"
		})
	}
}

// runCmd runs a command and returns its output and error, for commands
// that are expected to fail.
func runCmd(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}
