package agent

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/runtime"
)

const (
	// registerMinBackoff is the first wait before a control stream,
	// whose hello registers the node, is opened again after it failed
	// to open or was refused; it grows (jittered) while it keeps failing.
	registerMinBackoff = 500 * time.Millisecond
	maxBackoff         = 10 * time.Second
	rpcTimeout         = 10 * time.Second
)

// Run holds the node's control stream, whose hello registers the node
// (retrying with capped, jittered exponential backoff), and heartbeats on
// it until ctx ends, following the scheduler leader and registering again
// with each new one. Workload changes reported by
// runtime watchers trigger an immediate heartbeat; an audit every
// AuditInterval looks for zombies. Run returns nil when ctx ends; the
// workloads keep running.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run is already running")
	}
	defer a.running.Store(false)

	var wg sync.WaitGroup
	for _, rt := range a.order {
		w, ok := rt.(runtime.Watcher)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.watch(ctx, rt.Type(), w)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.auditLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.health.run(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.channelLoop(ctx)
	}()
	a.loop(ctx)
	a.endStreams()
	wg.Wait()
	a.log.Info("agent stopped; workloads left running")
	return nil
}

// loop is the one goroutine that owns heartbeats. Each control stream's
// hello registers the node (channelLoop), so a new stream starts a new
// registration: its first heartbeat carries the full list.
func (a *Agent) loop(ctx context.Context) {
	failures := 0 // consecutive heartbeat failures
	var heartbeatRetry retry
	var sent sentList // reset with each registration and on any heartbeat error
	// checked is the last control stream seen, lastOn the address of the
	// scheduler that accepted it: only a leader accepts a stream, so
	// another address means the leader changed.
	var checked *nodechannel.Link
	lastOn := ""
	for ctx.Err() == nil {
		link, on, err := a.awaitLink(ctx, a.heartbeatInterval())
		if ctx.Err() != nil {
			return
		}
		if err == nil && link != checked {
			checked = link
			failures, sent = 0, sentList{}
			heartbeatRetry.reset()
			moved := lastOn != "" && on != lastOn
			lastOn = on
			if moved {
				// Report usage to the new leader at once.
				a.log.Info("registered with another scheduler: the leader changed", "to", on)
				a.metrics.leaderChanges.Inc()
			} else if !a.waitLinked(ctx, a.heartbeatInterval()) {
				return
			}
			continue
		}
		var reply heartbeatReply
		if err == nil {
			reply, err = a.heartbeat(ctx, link, &sent)
		} else {
			sent = sentList{}
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && reply == replyReregister:
			a.log.Info("scheduler asked the node to register again; opening a new control stream")
			a.dropStream(link)
			continue
		case err == nil && reply == replyResendFull:
			// The lease was renewed; the list goes at once, not after
			// another interval without one.
			a.metrics.fullResends.Inc()
			a.log.Info("scheduler holds no list with the digest sent; sending the full list")
			failures = 0
			heartbeatRetry.reset()
			continue
		case err == nil:
			if failures > 0 {
				a.log.Info("heartbeat recovered", "failures", failures)
			}
			failures = 0
			heartbeatRetry.reset()
			if !a.waitLinked(ctx, a.heartbeatInterval()) {
				return
			}
		case errors.Is(err, errNoStream), errors.Is(err, nodechannel.ErrLinkClosed):
			// The heartbeat waited an interval for the stream, or its
			// stream ended under it; channelLoop reopens it, and the next
			// one goes as soon as it is open. The lease TTL covers a
			// reconnect.
			failures++
			a.metrics.heartbeatFailures.Inc()
			a.setContact(err)
			if failures == 1 || failures%10 == 0 {
				a.log.Warn("heartbeat waits for the control stream", "failures", failures, "err", err)
			}
		default:
			failures++
			a.metrics.heartbeatFailures.Inc()
			a.setContact(err)
			if status.Code(err) == codes.NotFound {
				a.log.Warn("scheduler does not know the node; registering again on a new control stream", "err", err)
				a.dropStream(link)
			}
			d := a.retryDelay(&heartbeatRetry, a.heartbeatInterval())
			a.log.Warn("heartbeat failed", "failures", failures, "next", a.control.target(),
				"retry_in", d.String(), "err", err)
			if !a.wait(ctx, d, false) {
				return
			}
		}
	}
}

// retryDelay is the next wait of rt, a sequence of failed registrations
// or heartbeats, bounded while the node's lease may be alive (see
// leaseRetryLimit).
func (a *Agent) retryDelay(rt *retry, base time.Duration) time.Duration {
	a.mu.Lock()
	ttl, renewedAt := a.leaseTTL, a.renewedAt
	a.mu.Unlock()
	var since time.Duration
	if !renewedAt.IsZero() {
		since = time.Since(renewedAt)
	}
	return rt.next(base, ttl, since)
}

// waitLinked is a kickable wait that a new control stream also ends: its
// hello registered the node, and the heartbeats start over from it.
func (a *Agent) waitLinked(ctx context.Context, d time.Duration) bool {
	changed := a.linkChange()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-a.kick:
	case <-changed:
	}
	return true
}

// wait sleeps d or until ctx ends; with kickable, a kick ends it early. It
// reports false when ctx ended.
func (a *Agent) wait(ctx context.Context, d time.Duration, kickable bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var kick <-chan struct{}
	if kickable {
		kick = a.kick
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-kick:
		return true
	}
}

func (a *Agent) capabilities() *persysv1.NodeCapabilities {
	c := &persysv1.NodeCapabilities{
		Capacity:    a.Capacity(),
		Allocatable: allocatable(a.capacity, a.cfg.UtilizationThreshold),
		Labels:      make(map[string]string, len(a.cfg.Labels)),
		Os:          goruntime.GOOS,
		Arch:        goruntime.GOARCH,
		Hostname:    a.hostname,
	}
	for k, v := range a.cfg.Labels {
		c.Labels[k] = v
	}
	for _, rt := range a.order {
		c.Runtimes = append(c.Runtimes, rt.Type())
	}
	c.VmAccel = a.cfg.VMAccel
	c.Policy = specaccess.PolicyToProto(a.cfg.Policy)
	if r := a.cfg.DynamicPorts; r != (hostaccess.PortRange{}) {
		c.DynamicPorts = &persysv1.PortRange{First: r.First, Last: r.Last}
	}
	for _, p := range a.cfg.StoragePools {
		sp := &persysv1.StoragePool{Name: p.Name, Path: p.Path, CapacityBytes: p.Capacity}
		if size, free, err := fsSpace(p.Path); err == nil {
			if sp.CapacityBytes == 0 {
				sp.CapacityBytes = size
			}
			sp.FreeBytes = free
		}
		c.StoragePools = append(c.StoragePools, sp)
	}
	c.UsedHostPorts = a.usedHostPorts()
	return c
}

// registration is the node's registration, sent in each control
// stream's hello; target is the scheduler it goes to (the node's address
// defaults to the local end of the route there).
func (a *Agent) registration(ctx context.Context, target string) (*persysv1.RegisterNodeRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	workloads, err := a.listAll(ctx)
	if err != nil {
		return nil, err
	}
	address := a.cfg.AdvertiseAddr
	if address == "" {
		address = localAddressToward(target)
	}
	if address == "" {
		return nil, fmt.Errorf("register node: no route to scheduler %s to take the node's address from; set the advertise address", target)
	}
	// Before the first registration of a data dir the list holds only
	// what the runtimes adopt without a cluster label (cluster.go).
	return &persysv1.RegisterNodeRequest{
		NodeId:       a.cfg.NodeID,
		Address:      address,
		Capabilities: a.capabilities(),
		Workloads:    workloads,
		InstanceId:   a.instanceID,
		ClusterId:    a.cluster.ID(),
		// The scheduler sends at most this many applies and deletes at
		// once (at most its own bound).
		MaxConcurrentCalls: uint32(a.cfg.MaxConcurrentCalls),
	}, nil
}

// registered takes the scheduler's answer to the registration req that
// the stream opened on on carried. An error (a cluster id that is not
// the data dir's) ends the stream.
func (a *Agent) registered(on string, req *persysv1.RegisterNodeRequest, resp *persysv1.RegisterNodeResponse) error {
	if err := a.learnCluster(resp.GetClusterId()); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	a.adoptInterval(resp.GetHeartbeatIntervalMs())
	a.adoptLeaseTTL(resp.GetLeaseTtlSeconds())
	a.mu.Lock()
	interval := a.interval
	a.contact = nil
	a.renewedAt = time.Now()
	a.mu.Unlock()
	workloads := req.GetWorkloads()
	a.metrics.registrations.Inc()
	a.metrics.setWorkloads(workloads)
	a.lister.seed(workloads)
	a.log.Info("registered with scheduler", "scheduler", on, "address", req.GetAddress(), "workloads", len(workloads),
		"heartbeat_interval", interval.String(), "lease_ttl_seconds", resp.GetLeaseTtlSeconds())
	return nil
}

// heartbeatReply is what the scheduler asked in answer to a heartbeat.
type heartbeatReply int

const (
	replyOK heartbeatReply = iota
	// replyReregister: the scheduler does not know the node.
	replyReregister
	// replyResendFull: the scheduler holds no list with the digest sent.
	replyResendFull
)

// heartbeat sends one heartbeat on the control stream's link and reports
// what the scheduler asked.
// A list the scheduler acknowledged on this stream (sent) is told against:
// unchanged, as its digest alone; changed, as the statuses that changed
// and the names removed. The first heartbeat of a stream carries the full
// list, and so does the one after an error or a request for it.
func (a *Agent) heartbeat(ctx context.Context, link *nodechannel.Link, sent *sentList) (heartbeatReply, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if !sent.base(link) {
		*sent = sentList{}
	}
	mark := a.ledger.mark()
	budget := a.heartbeatInterval() / 2
	if budget <= 0 {
		budget = time.Second
	}
	workloads, fresh, err := a.heartbeatList(ctx, budget)
	if err != nil {
		*sent = sentList{}
		return replyOK, err
	}
	if fresh {
		a.settleLedger(workloads, mark)
	}
	// Listing goes on every time (the ledger and the zombie overlay need
	// it); only sending what the scheduler holds is saved.
	out := a.outgoingHeartbeat(sent, workloads)
	resp, err := link.Heartbeat(ctx, out.req)
	if err != nil {
		*sent = sentList{}
		return replyOK, fmt.Errorf("heartbeat: %w", err)
	}
	a.setContact(nil)
	if !resp.GetReregister() {
		if dropped := a.repairNotes.sent(out.req.Repairs); dropped > 0 {
			a.log.Warn("repairs not told to the scheduler: too many while it was out of reach", "dropped", dropped)
		}
		a.mu.Lock()
		a.renewedAt = time.Now()
		a.mu.Unlock()
	}
	// The scheduler stretches the interval as its cluster grows.
	a.adoptInterval(resp.GetHeartbeatIntervalMs())
	return out.settle(resp, link, workloads, sent), nil
}

// settleLedger prunes the allocation record by a list taken after mark
// (an older one misses workloads applied since) and releases what failed
// workloads held, zombies excepted: one reported FAILED may still hold
// what it took. Only the loop goroutine settles, so it reuses one set of
// names (making a new one per heartbeat was a fifth of settling in the
// million's profile).
func (a *Agent) settleLedger(workloads []*persysv1.WorkloadStatus, mark uint64) {
	if a.present == nil {
		a.present = make(map[string]bool, len(workloads))
	}
	present := a.present
	clear(present)
	var failed map[string]bool
	for _, w := range workloads {
		present[w.GetName()] = true
		if w.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED {
			continue
		}
		if _, zombie := a.zombies.get(w.GetName()); !zombie {
			if failed == nil {
				failed = map[string]bool{}
			}
			failed[w.GetName()] = true
		}
	}
	a.ledger.prune(present, mark, a.log)
	a.ledger.release(failed, mark)
	a.metrics.setWorkloads(workloads)
}

// outgoing is one heartbeat as sent: its kind ("full", "digest" or
// "delta") and what the list held on the stream becomes once the
// scheduler keeps it.
type outgoing struct {
	req     *persysv1.HeartbeatRequest
	kind    string
	delta   change
	whole   fullList
	ports   []*persysv1.HostPort
	portsAt time.Time
}

// outgoingHeartbeat builds the heartbeat for workloads against the list
// the scheduler holds (sent): the full list, its digest alone, or what
// changed. The digest comes from what changed since the list the
// scheduler holds, when it holds one: hashing every status on every
// heartbeat was most of a heartbeat's cost at 100 workloads a node.
func (a *Agent) outgoingHeartbeat(sent *sentList, workloads []*persysv1.WorkloadStatus) outgoing {
	now := time.Now()
	var out outgoing
	if sent.digest != 0 {
		out.delta = sent.delta(workloads)
	}
	if out.delta.digest == 0 {
		out.whole = digestWhole(workloads)
		out.delta.digest = out.whole.digest
	}
	req := &persysv1.HeartbeatRequest{NodeId: a.cfg.NodeID, Usage: a.usage(), ReportDigest: out.delta.digest,
		Repairs: a.repairNotes.peek()}
	// Ports are kept out of the digest (any socket opened on the host
	// would change it) and go with a full list or when they changed.
	out.ports, out.portsAt = sent.ports, sent.portsAt
	if sent.digest == 0 || now.Sub(out.portsAt) >= portScanEvery {
		out.ports, out.portsAt = a.usedHostPorts(), now
	}
	out.kind = "full"
	switch {
	case sent.digest == 0 || out.whole.digest != 0:
		req.Workloads, req.UsedHostPorts = workloads, out.ports
	case sent.digest == req.ReportDigest && samePorts(sent.ports, out.ports):
		out.kind = "digest"
		req.DigestOnly = true
	default:
		out.kind = "delta"
		req.Delta = true
		req.Workloads, req.Removed = out.delta.changed, out.delta.removed
		req.UsedHostPorts = out.ports
	}
	out.req = req
	return out
}

// settle updates the list held on the stream (sent) from the scheduler's
// answer and tells what it asked.
func (out outgoing) settle(resp *persysv1.HeartbeatResponse, link *nodechannel.Link, workloads []*persysv1.WorkloadStatus, sent *sentList) heartbeatReply {
	switch {
	case resp.GetReregister():
		*sent = sentList{}
		return replyReregister
	case out.kind == "digest" && resp.GetResendFull(), out.kind == "delta" && resp.GetSendFullList():
		*sent = sentList{}
		return replyResendFull
	case out.kind == "digest":
		// The ports scanned, if they were, are the ones held.
		sent.portsAt = out.portsAt
	case resp.GetDigestKept() && out.kind == "delta":
		sent.apply(out.delta, out.ports, out.portsAt)
	case resp.GetDigestKept():
		*sent = acked(link, out.whole, workloads, out.ports, out.portsAt)
	default:
		// A scheduler that predates digests keeps getting full lists.
		*sent = sentList{}
	}
	return replyOK
}

// usage reports the node's usage: the resource requests of what it runs,
// with the host's real memory use when the capacity came from the host.
func (a *Agent) usage() *persysv1.Resources {
	u := a.ledger.total()
	if a.hostCapacity {
		if used, err := hostMemoryUsed(); err == nil {
			u.MemoryBytes = used
		}
	}
	return u
}

// listAll lists the workloads of every runtime, stamped with the node id,
// with known zombies reported FAILED and each workload's health (the
// listing also starts and stops the health checks).
// A runtime that cannot list fails the whole call: a partial list would
// tell the scheduler that running workloads are missing.
func (a *Agent) listAll(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	var all []*persysv1.WorkloadStatus
	a.stampMu.Lock()
	// Two maps take turns (the last listing's and this one's), cleared,
	// not made anew (making one per listing was 5 % of listing).
	stamped := a.stampedSpare
	if stamped == nil {
		stamped = make(map[*persysv1.WorkloadStatus]*persysv1.WorkloadStatus, len(a.stamped))
	}
	clear(stamped)
	for _, rt := range a.order {
		ws, err := rt.List(ctx)
		if err != nil {
			a.stampMu.Unlock()
			return nil, fmt.Errorf("list %s workloads: %w", runtimeName(rt.Type()), err)
		}
		for _, w := range ws {
			// A status listed again (the same one: runtimes that copy on
			// write hand it out again) keeps its stamped copy.
			st, ok := a.stamped[w]
			if !ok {
				st = a.stamp(w)
			}
			stamped[w] = st
			all = append(all, st)
		}
	}
	a.stamped, a.stampedSpare = stamped, a.stamped
	a.stampMu.Unlock()
	return a.health.sync(a.zombies.overlay(all)), nil
}

// stamp fills the node id of a status reported by a runtime.
func (a *Agent) stamp(st *persysv1.WorkloadStatus) *persysv1.WorkloadStatus {
	if st == nil {
		return nil
	}
	if st.GetNodeId() == "" {
		st = proto.Clone(st).(*persysv1.WorkloadStatus)
		st.NodeId = a.cfg.NodeID
	}
	return st
}

// watch forwards a runtime's change notifications as immediate heartbeats,
// re-establishing the watch when it ends before ctx does.
func (a *Agent) watch(ctx context.Context, t persysv1.WorkloadType, w runtime.Watcher) {
	name := runtimeName(t)
	log := a.log.With("runtime", name)
	failures := 0
	var rt retry
	for ctx.Err() == nil {
		ch, err := w.Watch(ctx)
		if err != nil {
			failures++
			d := rt.next(registerMinBackoff, 0, 0)
			log.Warn("watch runtime failed", "retry_in", d.String(), "err", err)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if failures > 0 {
			// Changes may have been missed while the watch was down.
			a.Kick()
		}
		for workload := range ch {
			failures = 0
			rt.reset()
			a.metrics.watcherEvents.WithLabelValues(name).Inc()
			log.Debug("workload changed", "workload", workload)
			a.Kick()
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		d := rt.next(registerMinBackoff, 0, 0)
		log.Warn("runtime watch ended; watching again", "retry_in", d.String())
		if !sleep(ctx, d) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Bounds of what the agent takes from the scheduler: a heartbeat interval
// outside them would flood the scheduler or lose the node, a lease TTL
// would make retries pointless or frantic.
const (
	minToldInterval = 10 * time.Millisecond
	maxToldInterval = 10 * time.Minute
	minToldLeaseTTL = time.Second
	maxToldLeaseTTL = time.Hour
)

// adoptInterval takes the heartbeat interval the scheduler told.
func (a *Agent) adoptInterval(ms int64) {
	a.adopt("heartbeat interval", ms, time.Millisecond, minToldInterval, maxToldInterval, &a.interval)
}

// adoptLeaseTTL takes the lease TTL the scheduler told at registration.
func (a *Agent) adoptLeaseTTL(seconds int64) {
	a.adopt("lease TTL", seconds, time.Second, minToldLeaseTTL, maxToldLeaseTTL, &a.leaseTTL)
}

// adopt sets *field to n units, as the scheduler told; 0 keeps the current
// value, and one outside [lo, hi] is ignored with a warning.
func (a *Agent) adopt(what string, n int64, unit, lo, hi time.Duration, field *time.Duration) {
	if n == 0 {
		return
	}
	if n < 0 || n > int64(hi/unit) || time.Duration(n)*unit < lo {
		a.log.Warn("ignoring the "+what+" the scheduler told", "told", n, "unit", unit.String(),
			"min", lo.String(), "max", hi.String())
		return
	}
	a.mu.Lock()
	*field = time.Duration(n) * unit
	a.mu.Unlock()
}
