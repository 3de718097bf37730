package federation

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/devproc"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// replica is one `persys federation` process of several on one etcd.
type replica struct {
	name, dir, metrics string
	args               []string
	proc               *devproc.Proc
}

// probes is how many member probes this replica made since it started:
// the probe loop runs on the leader alone.
func (r *replica) probes(t *testing.T) string {
	for _, l := range strings.Split(metricsBody(t, r.metrics, "/metrics"), "\n") {
		if strings.HasPrefix(l, "persys_federation_member_probe_duration_seconds_count") {
			return l
		}
	}
	return ""
}

func (r *replica) cfg() string { return filepath.Join(r.dir, "persysctl.yaml") }

// TestReplicas runs two federation replicas on one external etcd in front
// of a real dev cluster, and three times kills the leader with SIGKILL in
// the middle of a burst of federated workload applies: the other replica
// takes over (it leads, and its probe loop reaches the member), every
// workload whose apply was acknowledged is there and runs without being
// applied again, the rest run once applied again through the new leader,
// and the engine holds exactly one container per workload name. A
// follower refuses a change naming the leader and answers reads. Last,
// the leader is killed with a stored decision whose member call is in
// flight: one container.
func TestReplicas(t *testing.T) {
	docker, image := images.HelloImage(t)
	b := devproc.Build(t)
	m := startMember(t, b, "r", docker)
	m.WaitReady(t)
	etcd := storetest.NewCluster(t, 1)
	eb := etcd.Bundle

	reps := []*replica{{name: "fed-1", dir: t.TempDir()}, {name: "fed-2", dir: t.TempDir()}}
	for _, r := range reps {
		r.metrics = freeport.Addr(t, "127.0.0.1")
		r.args = []string{"federation", "--data-dir", r.dir, "--listen", freeport.Addr(t, "127.0.0.1"), "--metrics-listen", r.metrics,
			"--etcd-endpoints", strings.Join(etcd.Endpoints(), ","), "--etcd-ca", eb.CA, "--etcd-cert", eb.Scheduler.Cert, "--etcd-key", eb.Scheduler.Key,
			"--election-ttl", "2s", "--probe-interval", "1s", "--grace", "6s", "--probe-timeout", "2s"}
	}
	start := func(r *replica) {
		r.proc = devproc.Start(t, "persys "+r.name, b.Persys, r.args...)
		devproc.WaitFor(t, r.proc, r.name+" answering", 60*time.Second, func() (bool, string) {
			out, err := devproc.Run(b.Persysctl, "--config", r.cfg(), "get", "clusters")
			return err == nil, out
		})
	}
	start(reps[0])
	// One CA for the API: the second replica starts on a copy of the
	// first one's pki folder.
	if out, err := exec.Command("cp", "-a", filepath.Join(reps[0].dir, "pki"), reps[1].dir).CombinedOutput(); err != nil {
		t.Fatalf("copy pki: %v\n%s", err, out)
	}
	start(reps[1])

	leader := func(timeout time.Duration) (lead, follow *replica) {
		devproc.WaitFor(t, nil, "a leading replica", timeout, func() (bool, string) {
			for i, r := range reps {
				if r.proc.Exited() {
					continue
				}
				if info, err := fedClient(t, r.cfg()).Leader(context.Background()); err == nil && info.GetIsLeader() {
					lead, follow = r, reps[1-i]
					return true, ""
				}
			}
			return false, "no replica says it leads"
		})
		return lead, follow
	}
	lead, follow := leader(30 * time.Second)

	ids := filepath.Join(m.Dir, "fedid")
	must(t, b.Persysctl, "--config", m.Config(), "user", "issue", "federation", "--role", "operator", "--out", ids)
	join := []string{"federation", "join", "r", "--gateway", "https://" + m.Gateway, "--ca", filepath.Join(ids, "federation-ca.crt"),
		"--cert", filepath.Join(ids, "federation.crt"), "--key", filepath.Join(ids, "federation.key")}
	// A follower refuses the change and names the leader; nothing stored.
	if out, err := devproc.Run(b.Persys, append(join, "--config", follow.cfg())...); err == nil || !strings.Contains(out, "not the leader") || !strings.Contains(out, leaderURL(lead)) {
		t.Fatalf("join through the follower: %v\n%s\nwant a refusal naming the leader %s", err, out, leaderURL(lead))
	}
	if out, err := devproc.Run(b.Persysctl, "--config", follow.cfg(), "get", "clusters"); err != nil || !strings.Contains(out, "No clusters.") {
		t.Fatalf("get clusters through the follower after its refusal: %v\n%s", err, out)
	}
	if out, err := devproc.Run(b.Persys, append(join, "--config", lead.cfg())...); err != nil || !strings.Contains(out, "joined: Ready") {
		t.Fatalf("join through the leader: %v\n%s", err, out)
	}
	// Reads come from either replica.
	if out, err := devproc.Run(b.Persysctl, "--config", follow.cfg(), "get", "clusters"); err != nil || !rowHas(out, "r", "Ready") {
		t.Fatalf("get clusters through the follower: %v\n%s", err, out)
	}
	// A workload applied through the follower: refused, nothing stored.
	refused := filepath.Join(t.TempDir(), "refused.yaml")
	if err := os.WriteFile(refused, fmt.Appendf(nil, "apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: fedrep-refused\nspec:\n  type: container\n"+
		"  desiredState: running\n  container:\n    image: %s\nplacement:\n  clusters: [r]\n", image), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := devproc.Run(b.Persysctl, "--config", follow.cfg(), "apply", "-f", refused); err == nil || !strings.Contains(out, "not the leader") {
		t.Fatalf("apply through the follower: %v\n%s\nwant a refusal naming the leader", err, out)
	}
	if out, err := devproc.Run(b.Persysctl, "--config", lead.cfg(), "get", "workloads", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("workloads after the refused apply: %v\n%q, want none", err, out)
	}
	node := fmt.Sprintf("fed-r-%d", os.Getpid())
	if out, err := devproc.Run(b.Persysctl, "--config", follow.cfg(), "get", "node", "r/"+node); err != nil || !strings.Contains(out, node) {
		t.Fatalf("get node r/%s through the follower: %v\n%s", node, err, out)
	}
	// events --follow through the follower, which leads after the first
	// kill: it shows the placements of both leaders, as they happen.
	events := devproc.Start(t, "persysctl events --follow", b.Persysctl, "--config", follow.cfg(), "events", "--follow")

	const burst = 5
	var leadTimes, actTimes []time.Duration
	for cycle := range 3 {
		names := make([]string, burst)
		files := make([]string, burst)
		for i := range names {
			names[i] = fmt.Sprintf("fedrep-%d-%d-%d", os.Getpid(), cycle, i)
			files[i] = filepath.Join(t.TempDir(), names[i]+".yaml")
			body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
				"  container:\n    image: %s\n  resources:\n    cpu: 10m\n    memory: 8Mi\nplacement:\n  clusters: [r]\n", names[i], image)
			if err := os.WriteFile(files[i], []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The burst: applies one after the other through the leader; the
		// leader is killed once two were acknowledged, with the third in
		// flight or about to be.
		var (
			mu    sync.Mutex
			acked []string
			wg    sync.WaitGroup
		)
		two := make(chan struct{})
		wg.Go(func() {
			for i, f := range files {
				if _, err := devproc.Run(b.Persysctl, "--config", lead.cfg(), "apply", "-f", f); err == nil {
					mu.Lock()
					acked = append(acked, names[i])
					if len(acked) == 2 {
						close(two)
					}
					mu.Unlock()
				}
			}
		})
		select {
		case <-two:
		case <-time.After(60 * time.Second):
			t.Fatalf("cycle %d: two applies not acknowledged through the leader %s", cycle, lead.name)
		}
		// The follower placed nothing and probed nothing: its loops wait
		// for the lead.
		if got := follow.probes(t); got != "" {
			t.Fatalf("cycle %d: follower %s probed members: %s", cycle, follow.name, got)
		}
		lead.proc.Kill()
		killed := time.Now()
		wg.Wait()

		// The other replica leads, then acts: its probe loop reaches
		// the member (a last contact after the kill).
		var ledAt, actedAt time.Time
		devproc.WaitFor(t, follow.proc, follow.name+" leading", 30*time.Second, func() (bool, string) {
			info, err := fedClient(t, follow.cfg()).Leader(context.Background())
			if err != nil || !info.GetIsLeader() {
				return false, fmt.Sprint(info, err)
			}
			ledAt = time.Now()
			return true, ""
		})
		devproc.WaitFor(t, follow.proc, follow.name+" probing the member", 30*time.Second, func() (bool, string) {
			list := clusters(t, func(args ...string) (string, error) {
				return devproc.Run(b.Persysctl, append([]string{"--config", follow.cfg()}, args...)...)
			})
			if len(list) == 1 && list[0].Health.LastContact.After(killed) {
				actedAt = time.Now()
				return true, ""
			}
			return false, fmt.Sprint(list)
		})
		if out, err := devproc.Run(b.Persysctl, "--config", follow.cfg(), "events"); err != nil || !strings.Contains(out, "federation replica "+leaderURL(follow)+" leads") {
			t.Fatalf("cycle %d: events after the takeover: %v\n%s\nwant %s's election", cycle, err, devproc.Tail(out, 10), follow.name)
		}
		leadTimes = append(leadTimes, ledAt.Sub(killed))
		actTimes = append(actTimes, actedAt.Sub(killed))
		t.Logf("cycle %d: %s killed after %d acknowledged applies; %s leading after %s, probing after %s",
			cycle, lead.name, len(acked), follow.name, ledAt.Sub(killed).Round(time.Millisecond), actedAt.Sub(killed).Round(time.Millisecond))

		// Nothing lost: every acknowledged workload runs, not applied
		// again. The rest are applied again through the new leader, as
		// a client whose call failed would.
		for _, n := range acked {
			waitWorkload(t, follow.dir, n, "r")
		}
		for i, n := range names {
			if slices.Contains(acked, n) {
				continue
			}
			must(t, b.Persysctl, "--config", follow.cfg(), "apply", "-f", files[i])
			waitWorkload(t, follow.dir, n, "r")
		}
		// Nothing placed twice: one container per workload name.
		for _, n := range names {
			if got := containers(t, n); got != 1 {
				t.Fatalf("cycle %d: %d containers of %s on the engine, want 1", cycle, got, n)
			}
		}
		if cycle == 0 {
			for _, n := range []string{names[0], names[burst-1]} {
				devproc.WaitFor(t, events, "the followed stream showing "+n, 30*time.Second, func() (bool, string) {
					out := events.Log.String()
					return strings.Contains(out, n), devproc.Tail(out, 5)
				})
			}
			events.Stop()
		}
		// The killed replica comes back as a follower.
		start(lead)
		lead, follow = follow, lead
	}
	inFlight(t, b, m, etcd, lead, follow, leader, image)
	t.Logf("federation leader failover, n=%d: leading after min %s median %s max %s; acting (probing) after min %s median %s max %s",
		len(leadTimes), minOf(leadTimes), median(leadTimes), maxOf(leadTimes), minOf(actTimes), median(actTimes), maxOf(actTimes))
}

// leaderURL is the address a replica advertises: its API URL.
func leaderURL(r *replica) string {
	return "https://" + r.args[slices.Index(r.args, "--listen")+1]
}

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func minOf(d []time.Duration) time.Duration { return sorted(d)[0].Round(time.Millisecond) }
func maxOf(d []time.Duration) time.Duration { return sorted(d)[len(d)-1].Round(time.Millisecond) }
func median(d []time.Duration) time.Duration {
	return sorted(d)[len(d)/2].Round(time.Millisecond)
}

// inFlight kills the leader after it stored a decision and while its call
// to the member is in flight: the member's process is stopped (SIGSTOP)
// so that the call waits, the leader is killed, and the member resumes,
// possibly taking the dead leader's request late. The new leader sends
// the stored decision again; the member applies by name: one container.
func inFlight(t *testing.T, b devproc.Bins, m *member, etcd *storetest.Cluster, lead, follow *replica, leader func(time.Duration) (*replica, *replica), image string) {
	name := fmt.Sprintf("fedrep-%d-inflight", os.Getpid())
	file := filepath.Join(t.TempDir(), name+".yaml")
	body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
		"  container:\n    image: %s\n  resources:\n    cpu: 10m\n    memory: 8Mi\nplacement:\n  clusters: [r]\n", name, image)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	st := fedstore.New(etcd.Client(t), "", 0)
	if err := m.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = m.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	applied := make(chan string, 1)
	go func() {
		out, err := devproc.Run(b.Persysctl, "--config", lead.cfg(), "apply", "-f", file)
		applied <- fmt.Sprint(out, err)
	}()
	devproc.WaitFor(t, lead.proc, "the decision stored before the member call", 30*time.Second, func() (bool, string) {
		w, _, err := st.GetWorkload(context.Background(), name)
		return err == nil && w.Decision.Cluster == "r" && !w.Sent.Same(w.Decision), fmt.Sprint(w.Decision, err)
	})
	lead.proc.Kill()
	t.Logf("in flight: apply through the killed leader ended with %q", <-applied)
	resume()
	if l, _ := leader(30 * time.Second); l != follow {
		t.Fatalf("after the kill %s leads, want %s", l.name, follow.name)
	}
	waitWorkload(t, follow.dir, name, "r")
	if got := containers(t, name); got != 1 {
		t.Fatalf("%d containers of %s, whose decision was stored when its leader was killed; want 1", got, name)
	}
}
