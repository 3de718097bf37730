package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// The service under test: 4 replicas, at most 3 per node and spread
// over the nodes' cluster.node label, one surge replica at a time and
// never one fewer available.
const (
	svcName     = "web"
	svcReplicas = 4
	svcSurge    = 1
	svcMaxUnav  = 0
)

// serviceManifest is the web service with greeting, whose readiness
// passes when ready. The readiness check is an exec of the hello binary:
// the agents live on a network of their own and the engine isolates it
// from the default bridge the replicas run on, so a check of the
// replica's address would never pass here; the test itself reaches each
// replica through its published host port, as a client would.
func (c *Cluster) serviceManifest(greeting string, ready bool) string {
	code := "0"
	if !ready {
		code = "1"
	}
	return fmt.Sprintf(`kind: Service
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  spread: {maxPerNode: 3, nodeLabel: cluster.node}
  update: {maxSurge: %[3]d, maxUnavailable: %[4]d, progressDeadline: 90s, autoRollback: true, drainDelay: 2s}
  template:
    type: container
    container:
      image: %[5]q
      env: {GREETING: %[6]q}
      ports: [{containerPort: 8080, dynamic: true}]
      restartPolicy: on-failure
      labels: {%[7]s: %[8]q}
    readinessProbe:
      exec: {command: ["/hello", "exit", %[9]q]}
      initialDelaySeconds: 1
      periodSeconds: 5
      timeoutSeconds: 5
      failureThreshold: 3
    resources: {cpu: 50m, memory: 16Mi}
`, svcName, svcReplicas, svcSurge, svcMaxUnav, c.HelloImg, greeting, labelRun, c.Run, code)
}

func (c *Cluster) applyService(greeting string, ready bool) {
	c.t.Helper()
	path := filepath.Join(c.Dir, "service-"+greeting+".yaml")
	if err := os.WriteFile(path, []byte(c.serviceManifest(greeting, ready)), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.MustCtl("apply", "-f", path)
}

func (c *Cluster) service() (*persysv1.ServiceView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Client().GetService(ctx, svcName, false)
}

func (c *Cluster) endpoints() (*persysv1.ServiceEndpointList, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Client().ServiceEndpoints(ctx, svcName)
}

// waitComplete waits until the rollout is COMPLETE with n replicas, all
// available at the template's revision, and n endpoints; it returns the
// time it took.
func (c *Cluster) waitComplete(what string, n int, timeout time.Duration) time.Duration {
	c.t.Helper()
	return c.WaitFor(what, timeout, func() (bool, string) {
		v, err := c.service()
		if err != nil {
			return false, err.Error()
		}
		p := v.GetProgress()
		eps, err := c.endpoints()
		if err != nil {
			return false, err.Error()
		}
		ok := p.GetPhase() == persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE && p.GetObservedGeneration() == v.GetService().GetGeneration() &&
			int(p.GetAvailable()) == n && int(p.GetUpdated()) == n && len(v.GetReplicas()) == n && len(eps.GetEndpoints()) == n
		return ok, fmt.Sprintf("phase %s revision %d: %d replicas, %d updated, %d available, %d endpoints; %s",
			p.GetPhase(), p.GetRevision(), len(v.GetReplicas()), p.GetUpdated(), p.GetAvailable(), len(eps.GetEndpoints()), p.GetMessage())
	})
}

// sampler samples, every 100 ms until stopped, the fewest endpoints and
// the most replicas (deleting ones included) of the service, and the
// replicas of one revision.
type sampler struct {
	minEndpoints, maxReplicas atomic.Int64
	revisions                 sync.Map // revision → highest count of its replicas seen
	stop                      chan struct{}
	done                      sync.WaitGroup
}

func (c *Cluster) startSampler() *sampler {
	s := &sampler{stop: make(chan struct{})}
	s.minEndpoints.Store(1 << 30)
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			c.sampleOnce(s)
		}
	}()
	return s
}

func (c *Cluster) sampleOnce(s *sampler) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if eps, err := c.Client().ServiceEndpoints(ctx, svcName); err == nil {
		s.minEndpoints.Store(min(s.minEndpoints.Load(), int64(len(eps.GetEndpoints()))))
	}
	list, err := c.Client().ListWorkloadsSelector(ctx, map[string]string{"persys.service": svcName})
	if err != nil {
		return
	}
	s.maxReplicas.Store(max(s.maxReplicas.Load(), int64(len(list.GetWorkloads()))))
	byRev := map[uint64]int64{}
	for _, w := range list.GetWorkloads() {
		byRev[w.GetWorkload().GetOwner().GetRevision()]++
	}
	for rev, n := range byRev {
		if old, ok := s.revisions.Load(rev); !ok || old.(int64) < n {
			s.revisions.Store(rev, n)
		}
	}
}

func (s *sampler) finish() {
	close(s.stop)
	s.done.Wait()
}

// poller is a client that follows the endpoints API every 50 ms and sends
// one request to every endpoint it lists, through the host port (the
// agents share this host's engine, so every node's host ports are here).
// Like any client of a list it acts only on a fresh one: it stops using a
// list staleAfter after asking for it (half the drain delay, so that a
// replica it still sends to has not been told to stop), and asks again.
type poller struct {
	requests, failures, stale atomic.Int64
	mu                        sync.Mutex
	firstFailures             []string
	stop                      chan struct{}
	done                      sync.WaitGroup
}

func (c *Cluster) startPoller() *poller {
	p := &poller{stop: make(chan struct{})}
	// A slow answer on a loaded machine is not a failed one; a replica
	// stopped under a request fails it at once (reset or refused).
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			asked := time.Now()
			eps, err := c.endpoints()
			if err != nil {
				continue // the endpoints API, not a replica, failed: nothing was asked of a replica
			}
			for _, ep := range eps.GetEndpoints() {
				if time.Since(asked) > staleAfter {
					p.stale.Add(1)
					break
				}
				p.request(hc, ep, asked)
			}
		}
	}()
	return p
}

// staleAfter is how long the poller uses an endpoint list: half the
// service's drainDelay.
const staleAfter = time.Second

func (p *poller) request(hc *http.Client, ep *persysv1.ServiceEndpoint, asked time.Time) {
	if len(ep.GetPorts()) == 0 {
		p.fail(fmt.Sprintf("%s: no host port", ep.GetReplica()))
		return
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ep.GetPorts()[0].GetHostPort()))) + "/"
	p.requests.Add(1)
	sent := time.Now()
	resp, err := hc.Get(url)
	if err != nil {
		p.fail(fmt.Sprintf("%s %s (list asked for %s before, answer after %s): %v", ep.GetReplica(), url,
			sent.Sub(asked).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond), err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.fail(fmt.Sprintf("%s %s: status %d", ep.GetReplica(), url, resp.StatusCode))
	}
}

func (p *poller) fail(why string) {
	p.failures.Add(1)
	p.mu.Lock()
	if len(p.firstFailures) < 10 {
		p.firstFailures = append(p.firstFailures, time.Now().Format("15:04:05.000")+" "+why)
	}
	p.mu.Unlock()
}

func (p *poller) finish() {
	close(p.stop)
	p.done.Wait()
}

// TestServiceRollout: a 4-replica HTTP service with dynamic host ports
// over 3 agents. A rolling update (new GREETING) under a client that
// polls every ready endpoint every 50 ms fails no request; an update
// whose readiness check fails stops after its one surge replica and
// rolls back by itself, never below replicas − maxUnavailable endpoints;
// a killed agent's replicas are replaced on the others, never above
// replicas + maxSurge replicas; scale to 8 and back to 2.
func TestServiceRollout(t *testing.T) {
	// Disjoint dynamic port ranges per agent, at a random base: the
	// agents (and other test runs) share this host's ports. Below the
	// kernel's ephemeral range (32768-60999), as the agent's default
	// range is: an outgoing connection there can hold a port a replica
	// was given (seen: PORT_CONFLICT on 33830 until the deadline).
	base := 20000 + 100*rand.IntN(119)
	c := Start(t, Options{AgentFlagsFor: func(i int) []string {
		return []string{"--dynamic-ports", fmt.Sprintf("%d-%d", base+30*i, base+30*i+29)}
	}})
	var timings []Timing
	c.applyService("one", true)
	timings = append(timings, Timing{"available", c.waitComplete("web: 4 replicas available", svcReplicas, 3*time.Minute)})
	nodes := map[string]bool{}
	eps, err := c.endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps.GetEndpoints() {
		nodes[ep.GetNodeId()] = true
		if ep.GetNodeAddress() == "" || len(ep.GetPorts()) != 1 || ep.GetPorts()[0].GetHostPort() < uint32(base) {
			t.Fatalf("endpoint %v: want a node address and a dynamic host port from %d", ep, base)
		}
	}
	// Spread over the agents' own label: a node that holds fewer
	// replicas always wins, so 4 replicas use all 3 agents.
	if len(nodes) != 3 {
		t.Fatalf("4 replicas on %d nodes, want all 3 agents: %v", len(nodes), eps.GetEndpoints())
	}
	t.Logf("4 replicas on %d nodes: %v", len(nodes), eps.GetEndpoints())

	// 1. A rolling update under a polling client: 0 failed requests.
	samples, client := c.startSampler(), c.startPoller()
	c.applyService("two", true)
	timings = append(timings, Timing{"rollout", c.waitComplete("web: rolled to greeting two", svcReplicas, 3*time.Minute)})
	client.finish()
	samples.finish()
	t.Logf("rollout: %d requests, %d failed, %d lists dropped as stale; fewest endpoints %d, most replicas %d",
		client.requests.Load(), client.failures.Load(), client.stale.Load(), samples.minEndpoints.Load(), samples.maxReplicas.Load())
	if client.requests.Load() == 0 || client.failures.Load() != 0 {
		t.Errorf("rollout: %d requests, %d failed, want some and none failed: %v", client.requests.Load(), client.failures.Load(), client.firstFailures)
	}
	checkBounds(t, "rollout", samples)

	// 2. A template whose readiness fails: one surge replica, then an
	// automatic rollback.
	good, err := c.service()
	if err != nil {
		t.Fatal(err)
	}
	samples = c.startSampler()
	began := time.Now()
	c.applyService("three", false)
	timings = append(timings, Timing{"rollback", c.WaitFor("web: rolled back", 3*time.Minute, func() (bool, string) {
		v, err := c.service()
		if err != nil {
			return false, err.Error()
		}
		p := v.GetProgress()
		return p.GetRolledBackFrom() != 0 && p.GetRevision() == good.GetProgress().GetRevision() &&
				p.GetPhase() == persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE && len(v.GetReplicas()) == svcReplicas,
			fmt.Sprintf("phase %s revision %d rolled back from %d: %s", p.GetPhase(), p.GetRevision(), p.GetRolledBackFrom(), p.GetMessage())
	})})
	samples.finish()
	checkBounds(t, "rollback", samples)
	samples.revisions.Range(func(rev, n any) bool {
		if rev.(uint64) > good.GetProgress().GetRevision() && n.(int64) > svcSurge {
			t.Errorf("failing revision %d had %d replicas at once, want at most the surge %d", rev, n, svcSurge)
		}
		return true
	})
	t.Logf("failing update rolled back %s after it was applied", time.Since(began).Round(time.Millisecond))

	// 3. Kill an agent that holds replicas: they are replaced on the others.
	eps, err = c.endpoints()
	if err != nil {
		t.Fatal(err)
	}
	victim := c.AgentByNode(eps.GetEndpoints()[0].GetNodeId())
	var lost []string
	for _, ep := range eps.GetEndpoints() {
		if ep.GetNodeId() == victim.NodeID {
			lost = append(lost, ep.GetReplica())
		}
	}
	samples = c.startSampler()
	killed := time.Now()
	c.KillAgent(victim)
	replaced := c.WaitFor("web: replicas of the killed node replaced", 3*time.Minute, func() (bool, string) {
		l, err := c.endpoints()
		if err != nil {
			return false, err.Error()
		}
		on := 0
		for _, ep := range l.GetEndpoints() {
			if ep.GetNodeId() != victim.NodeID {
				on++
			}
		}
		return on == svcReplicas, fmt.Sprintf("%d of %d endpoints off %s", on, len(l.GetEndpoints()), victim.NodeID)
	})
	samples.finish()
	// A moved replica starts again elsewhere: availability dips by
	// nature here; the surge bound holds.
	if n := samples.maxReplicas.Load(); n > svcReplicas+svcSurge {
		t.Errorf("agent loss: %d replicas at one sample, want at most %d", n, svcReplicas+svcSurge)
	}
	timings = append(timings, Timing{"replaced", replaced})
	bound := c.Opts.LeaseTTL + c.Opts.RescheduleGrace + 5*time.Second
	t.Logf("killed %s holding %v: replaced on the others after %s (lease TTL + grace + 5s = %s)",
		victim.NodeID, lost, time.Since(killed).Round(time.Millisecond), bound)
	c.StartAgent(victim)

	// 4. Scale to 8 and back to 2.
	c.WaitFor("3 nodes READY again", time.Minute, func() (bool, string) {
		nodes, err := c.Nodes()
		if err != nil {
			return false, err.Error()
		}
		ready := c.readyNodes(nodes)
		return len(ready) == 3, fmt.Sprintf("ready: %v", ready)
	})
	// Healed: the killed node's copies of the moved replicas are
	// orphans its agent removes, so each replica runs once.
	c.WaitFor("web: each replica runs once after the heal", time.Minute, func() (bool, string) {
		running, err := c.listWorkloadContainers(false)
		if err != nil {
			return false, err.Error()
		}
		n, twice := 0, []string{}
		for name, cts := range running {
			if !strings.HasPrefix(name, svcName+"-") {
				continue
			}
			n++
			if len(cts) > 1 {
				twice = append(twice, name)
			}
		}
		return n == svcReplicas && len(twice) == 0, fmt.Sprintf("%d replicas running, %v more than once", n, twice)
	})
	c.MustCtl("scale", "service", svcName, "--replicas", "8")
	timings = append(timings, Timing{"scale-8", c.waitComplete("web: 8 replicas", 8, 3*time.Minute)})
	c.MustCtl("scale", "service", svcName, "--replicas", "2")
	timings = append(timings, Timing{"scale-2", c.waitComplete("web: 2 replicas", 2, 3*time.Minute)})
	c.MustCtl("delete", "service", svcName)
	c.WaitFor("web deleted", 2*time.Minute, func() (bool, string) {
		out, err := c.Ctl("get", "services")
		return err == nil && strings.Contains(out, "No services."), out
	})
	var parts []string
	for _, tm := range timings {
		parts = append(parts, fmt.Sprintf("%s=%s", tm.Name, tm.D.Round(time.Millisecond)))
	}
	t.Logf("service rollout timings: %s", strings.Join(parts, " "))
}

// checkBounds asserts the sampled safety bounds of a phase with the
// service at svcReplicas: never fewer endpoints than replicas −
// maxUnavailable, never more replicas than replicas + maxSurge.
func checkBounds(t *testing.T, phase string, s *sampler) {
	t.Helper()
	if n := s.minEndpoints.Load(); n < svcReplicas-svcMaxUnav {
		t.Errorf("%s: %d endpoints at one sample, want at least %d", phase, n, svcReplicas-svcMaxUnav)
	}
	if n := s.maxReplicas.Load(); n > svcReplicas+svcSurge {
		t.Errorf("%s: %d replicas at one sample, want at most %d", phase, n, svcReplicas+svcSurge)
	}
}
