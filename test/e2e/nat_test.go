package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// natHost is a network namespace the test creates for an agent: a veth
// link to the host's namespace, a default route through it, and a
// firewall that drops every connection opened from outside, as a home
// router or a site's NAT does. Only connections the agent opens work.
type natHost struct {
	name     string
	hostIP   string // the host side of the link
	insideIP string // the namespace's side
}

// newNATHost creates the namespace; it is removed with the test.
func newNATHost(t *testing.T) *natHost {
	t.Helper()
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			need.Missing(t, "%s (iproute2, iptables) builds the test's network namespace: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		need.Missing(t, "creating a network namespace needs root")
	}
	id := os.Getpid() % 200
	n := &natHost{
		name:     fmt.Sprintf("persys-nat-%d", os.Getpid()),
		hostIP:   fmt.Sprintf("10.231.%d.1", id),
		insideIP: fmt.Sprintf("10.231.%d.2", id),
	}
	outer, inner := fmt.Sprintf("pnat%do", id), fmt.Sprintf("pnat%di", id)
	// Leftovers of an earlier run that was killed.
	_ = exec.Command("ip", "netns", "del", n.name).Run()
	_ = exec.Command("ip", "link", "del", outer).Run()
	n.must(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", n.name).Run() // removes both ends of the link
		_ = exec.Command("ip", "link", "del", outer).Run()
	})
	n.must(t, "ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
	n.must(t, "ip", "link", "set", inner, "netns", n.name)
	n.must(t, "ip", "addr", "add", n.hostIP+"/30", "dev", outer)
	n.must(t, "ip", "link", "set", outer, "up")
	n.in(t, "ip", "link", "set", "lo", "up")
	n.in(t, "ip", "addr", "add", n.insideIP+"/30", "dev", inner)
	n.in(t, "ip", "link", "set", inner, "up")
	n.in(t, "ip", "route", "add", "default", "via", n.hostIP)
	// Answers to the agent's own connections pass; nothing opened from
	// outside does.
	n.in(t, "iptables", "-A", "INPUT", "-i", inner, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
	n.in(t, "iptables", "-A", "INPUT", "-i", inner, "-j", "DROP")
	return n
}

func (n *natHost) must(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// in runs a command inside the namespace.
func (n *natHost) in(t *testing.T, name string, args ...string) {
	t.Helper()
	n.must(t, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// TestAgentBehindNAT runs the agent where the scheduler cannot reach it:
// in a network namespace that drops every connection opened from
// outside, as a site behind NAT or a firewall. The agent dials out and
// holds its control stream, so it registers, runs a real container,
// reports it, streams its log and removes it, with no inbound port.
func TestAgentBehindNAT(t *testing.T) {
	nat := newNATHost(t)
	c := newClusterWith(t, clusterOptions{nat: nat})

	// The firewall holds: the agent's metrics listener, inside the
	// namespace, cannot be reached from the host.
	if conn, err := net.DialTimeout("tcp", c.metrics["agent"], 2*time.Second); err == nil {
		_ = conn.Close()
		t.Fatalf("a connection from the host into the agent's namespace (%s) was accepted", c.metrics["agent"])
	}
	// And the agent listens on nothing else there.
	out, err := exec.Command("ip", "netns", "exec", nat.name, "ss", "-Hltn").CombinedOutput()
	if err != nil {
		t.Fatalf("ss in the namespace: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[3] != c.metrics["agent"] {
			t.Errorf("something listens in the agent's namespace besides its metrics: %s", line)
		}
	}

	// The node's address is the agent's side of its route to the
	// scheduler (no --advertise-address was given).
	nodes := c.mustCtl("get", "nodes", "-o", "json")
	if !strings.Contains(nodes, nat.insideIP) {
		t.Errorf("node list does not give the agent's address %s:\n%s", nat.insideIP, nodes)
	}

	name := "nat-" + c.nodeID
	port := freePort(t)
	c.mustCtl("apply", "-f", c.manifest(name, port, "nat"), "--wait", "--timeout", "2m")
	v, ok := c.getWorkload(name)
	if !ok || v.Status.State != "RUNNING" || v.Status.NodeID != c.nodeID {
		t.Fatalf("after apply --wait: state %q on node %q, want RUNNING on %s", v.Status.State, v.Status.NodeID, c.nodeID)
	}
	c.runningContainer(name)

	// Its log, followed through gateway, scheduler and the agent's stream.
	f := c.follow(t, name, "--follow")
	c.waitFor("the followed log's start line", 60*time.Second, func() bool {
		return strings.Contains(f.output(), `hello: listening on :8080, greeting "nat"`)
	})
	f.interrupt(t)

	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("containers removed", 60*time.Second, func() bool { return len(c.containers(name)) == 0 })
	c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
}
