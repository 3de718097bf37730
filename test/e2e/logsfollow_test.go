package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// tickerManifests writes a container workload and a two-service compose
// workload of the ticker image (a numbered line every 100 ms).
func (c *cluster) tickerManifests(t *testing.T, ctr, stack string) (string, string) {
	t.Helper()
	_, tag := images.TickerImage(t)
	ctrFile := c.writeFile(t, ctr+".yaml", fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: container
  container:
    image: %s
    labels: {e2e.cluster: %s}
  resources: {cpu: 50m, memory: 16Mi}
`, ctr, tag, c.nodeID))
	stackFile := c.writeFile(t, stack+".yaml", fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: compose
  compose:
    inline: |
      services:
        alpha:
          image: %s
          stop_grace_period: 1s
        beta:
          image: %s
          environment: {TICK: 150ms}
          stop_grace_period: 1s
`, stack, tag, tag))
	return ctrFile, stackFile
}

// follower is a running "persysctl logs ... -f".
type follower struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan error
}

func (f *follower) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}

func (f *follower) output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

func (c *cluster) follow(t *testing.T, args ...string) *follower {
	t.Helper()
	f := &follower{done: make(chan error, 1)}
	f.cmd = exec.Command(c.persysctl, append([]string{"--config", c.config, "logs", "workload"}, args...)...)
	f.cmd.Stdout, f.cmd.Stderr = f, f
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- f.cmd.Wait() }()
	t.Cleanup(func() { _ = f.cmd.Process.Kill() })
	return f
}

// interrupt sends Ctrl-C and requires a clean exit.
func (f *follower) interrupt(t *testing.T) string {
	t.Helper()
	_ = f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatalf("persysctl logs -f on Ctrl-C: %v\n%s", err, f.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("persysctl logs -f did not end on Ctrl-C:\n%s", f.output())
	}
	return f.output()
}

// tickLines returns the numbers of the complete "PREFIXtick N" lines of
// out; any other line fails the test.
func tickLines(t *testing.T, out, prefix string) []int {
	t.Helper()
	var ns []int
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			break
		}
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), prefix+"tick "))
		if err != nil || !strings.HasPrefix(line, prefix+"tick ") {
			t.Fatalf("unexpected line %q in:\n%s", line, out)
		}
		ns = append(ns, n)
	}
	return ns
}

func inOrder(ns []int) bool {
	for i := 1; i < len(ns); i++ {
		if ns[i] != ns[i-1]+1 {
			return false
		}
	}
	return len(ns) > 0
}

// lastTick follows until the newest tick is at least min and returns it.
func (c *cluster) waitTicks(t *testing.T, f *follower, prefix string, cond func([]int) bool) []int {
	t.Helper()
	var ns []int
	c.waitFor("log lines", 90*time.Second, func() bool {
		ns = tickLines(t, filterPrefix(f.output(), prefix), prefix)
		return len(ns) > 0 && cond(ns)
	})
	return ns
}

// filterPrefix keeps the lines of out that start with prefix ("" keeps all).
func filterPrefix(out, prefix string) string {
	if prefix == "" {
		return out
	}
	var b strings.Builder
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestLogsFollow(t *testing.T) {
	c := newCluster(t)
	ctr, stack := fmt.Sprintf("ticker-%d", time.Now().UnixNano()%1e6), fmt.Sprintf("tickers-%d", time.Now().UnixNano()%1e6)
	ctrFile, stackFile := c.tickerManifests(t, ctr, stack)
	c.mustCtl("apply", "-f", ctrFile, "--wait", "--timeout", "2m")
	c.mustCtl("apply", "-f", stackFile, "--wait", "--timeout", "2m")

	t.Run("container", func(t *testing.T) {
		f := c.follow(t, ctr, "-f")
		began := c.waitTicks(t, f, "", func([]int) bool { return true })
		startedAt := began[len(began)-1]
		c.waitTicks(t, f, "", func(ns []int) bool { return ns[len(ns)-1] >= startedAt+10 })
		ns := tickLines(t, f.interrupt(t), "")
		if !inOrder(ns) || ns[len(ns)-1] < startedAt+10 {
			t.Fatalf("followed ticks out of order, repeated or missing (follow began at tick %d): %v", startedAt, ns)
		}
	})
	t.Run("since", func(t *testing.T) {
		tail := tickLines(t, c.mustCtl("logs", "workload", ctr), "")
		since := time.Now().UTC().Format(time.RFC3339Nano)
		f := c.follow(t, ctr, "-f", "--since", since)
		ns := c.waitTicks(t, f, "", func(ns []int) bool { return len(ns) >= 5 })
		f.interrupt(t)
		if !inOrder(ns) || ns[0] <= tail[len(tail)-1] {
			t.Fatalf("--since %s sent %v; tick %d came before it", since, ns, tail[len(tail)-1])
		}
		f = c.follow(t, ctr, "-f", "--since", "1h")
		ns = c.waitTicks(t, f, "", func(ns []int) bool { return len(ns) >= 5 })
		f.interrupt(t)
		if ns[0] != 1 || !inOrder(ns) {
			t.Fatalf("--since 1h sent %v, want from tick 1", ns)
		}
	})
	t.Run("compose", func(t *testing.T) {
		f := c.follow(t, stack, "-f", "--service", "beta")
		began := c.waitTicks(t, f, "", func([]int) bool { return true })
		c.waitTicks(t, f, "", func(ns []int) bool { return ns[len(ns)-1] >= began[len(began)-1]+5 })
		if ns := tickLines(t, f.interrupt(t), ""); !inOrder(ns) {
			t.Fatalf("--service beta: %v", ns)
		}
		f = c.follow(t, stack, "-f")
		for _, svc := range []string{"alpha | ", "beta | "} {
			c.waitTicks(t, f, svc, func(ns []int) bool { return len(ns) >= 5 })
		}
		out := f.interrupt(t)
		for _, svc := range []string{"alpha | ", "beta | "} {
			if ns := tickLines(t, filterPrefix(out, svc), svc); !inOrder(ns) {
				t.Fatalf("%q lines out of order: %v", svc, ns)
			}
		}
	})
	t.Run("bad parameters", func(t *testing.T) { c.logsFollowRefusals(t, ctr) })
	// Last: a gateway shutdown ends an open follow at once, saying so,
	// rather than holding the shutdown until its timeout.
	t.Run("gateway shutdown", func(t *testing.T) {
		f := c.follow(t, ctr, "-f")
		c.waitTicks(t, f, "", func([]int) bool { return true })
		c.procs["gateway"].stop(t)
		select {
		case err := <-f.done:
			if err == nil || !strings.Contains(f.output(), "shutting down") {
				t.Fatalf("follow ended with %v, want the gateway's shutdown named:\n%s", err, tail(f.output(), 5))
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the follow did not end with the gateway")
		}
		if out := c.procs["gateway"].output(); strings.Contains(out, "shutting down: context deadline exceeded") {
			t.Fatalf("the gateway waited for the follow until its shutdown timeout:\n%s", tail(out, 10))
		}
	})
}

// logsFollowRefusals checks that bad parameters are refused naming the
// parameter, and that identities without the right to read logs are.
func (c *cluster) logsFollowRefusals(t *testing.T, ctr string) {
	admin := c.httpsClient(t, c.adminCert(t))
	for _, tc := range []struct{ query, field string }{
		{"follow=maybe", "follow"},
		{"follow=true&since=yesterday", "since"},
		{"follow=true&since=-5m", "since"},
		{"follow=true&tail_bytes=-1", "tail_bytes"},
		{"since=5m", "follow"},
		{"follow=true&service=" + strings.Repeat("s", 300), "service"},
	} {
		a, err := c.do(t, admin, "GET", "/v1/workloads/"+ctr+"/logs?"+tc.query, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.code != 400 || !contains(a.fields, tc.field) {
			t.Errorf("%s: %d %v %s, want 400 naming %s", tc.query, a.code, a.fields, a.body, tc.field)
		}
	}
	a, err := c.do(t, admin, "GET", "/v1/workloads/"+ctr+"/logs?follow=true&service=web", nil)
	if err != nil || a.code != 400 || !strings.Contains(a.errMsg, "service") {
		t.Errorf("service of a container workload: %v %d %s, want 400 naming service", err, a.code, a.body)
	}
	if out, err := c.ctl("logs", "workload", ctr, "-f", "--since", "yesterday"); err == nil || !strings.Contains(out, "since") {
		t.Errorf("persysctl --since yesterday: %v %s, want an error naming since", err, out)
	}
	ca, err := pki.LoadCA(c.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	// A daemon identity holds no user permission at the gateway.
	agentCl := c.httpsClient(t, issued(t, ca, "intruder-node", pki.RoleAgent))
	if a, err := c.do(t, agentCl, "GET", "/v1/workloads/"+ctr+"/logs?follow=true", nil); err != nil || a.code != 403 {
		t.Errorf("agent identity following logs: %v %d %s, want 403", err, a.code, a.body)
	}
	// The scheduler relays only to the gateway (and admins): a user's
	// own certificate is refused there, as for GetWorkloadLogs.
	for _, role := range []pki.Role{pki.RoleViewer, pki.RoleOperator} {
		if code := c.schedulerFollowCode(t, issued(t, ca, "someone-"+string(role), role), ctr); code != codes.PermissionDenied {
			t.Errorf("%s calling the scheduler's StreamWorkloadLogs: %s, want PermissionDenied", role, code)
		}
	}
	if code := c.schedulerFollowCode(t, c.adminCert(t), ctr); code != codes.OK {
		t.Errorf("admin calling the scheduler's StreamWorkloadLogs: %s, want OK", code)
	}
}

// schedulerFollowCode calls the scheduler's StreamWorkloadLogs with cert
// and returns the code of its first answer.
func (c *cluster) schedulerFollowCode(t *testing.T, cert tls.Certificate, name string) codes.Code {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: c.rootPool(t), Certificates: []tls.Certificate{cert}})
	conn, err := grpc.NewClient(c.schedAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := persysv1grpc.NewControlServiceClient(conn).StreamWorkloadLogs(ctx, &persysv1.StreamWorkloadLogsRequest{Name: name})
	if err != nil {
		return status.Code(err)
	}
	_, err = stream.Recv()
	return status.Code(err)
}
