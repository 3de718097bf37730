// Package placement decides which node a workload goes to. Place is a pure
// function over a snapshot of nodes: it filters out every node that cannot
// take the request, recording an enum reason per rejected node, and scores
// the rest (spread or bin-pack). It does no I/O, reads no clock, starts no
// goroutines and keeps no state; the same input always gives the same
// decision.
//
// Callers own the snapshot: they must not modify the nodes (or their label
// maps) while Place runs, should give every node a unique, non-empty ID, and
// should validate external input first (Node.Validate, Request.Validate).
//
// Place is written to run over 10,000 nodes per decision: it allocates
// nothing per feasible node, and rejections carry only structured fields.
// The human-readable text of a rejection is built on demand by
// Rejection.Detail, never inside Place. Above FullScanNodes nodes it stops
// after scoring SampleSize feasible nodes, so that the cost of a decision
// stops growing with the cluster; a Sampler rotates where those scans
// start.
package placement

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/model"
)

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid")

// RejectReason says why a node was filtered out. The values equal those of
// persysv1.RejectReason.
type RejectReason int

// Reject reasons, in the order the filters run.
const (
	// NodeNotReady: the node's lease expired or it never became ready.
	NodeNotReady RejectReason = 1
	// NodeCordoned: an operator cordoned the node; it takes no new work.
	NodeCordoned RejectReason = 2
	// RuntimeUnsupported: the node's agent does not offer the workload type.
	RuntimeUnsupported RejectReason = 3
	// InsufficientCPU: requested CPU exceeds capacity minus allocated.
	InsufficientCPU RejectReason = 4
	// InsufficientMemory: requested memory exceeds capacity minus allocated.
	InsufficientMemory RejectReason = 5
	// InsufficientDisk: requested disk exceeds capacity minus allocated.
	InsufficientDisk RejectReason = 6
	// SelectorMismatch: a node selector label is missing or has another value.
	SelectorMismatch RejectReason = 7
	// NodeDraining is used by the scheduler, not by Place.
	NodeDraining RejectReason = 8
	// CapabilityMissing: the workload requires KVM and the node has none.
	CapabilityMissing RejectReason = 9
	// PoolMissing: the node has no storage pool of a name the disks ask for.
	PoolMissing RejectReason = 10
	// PolicyDenied: the node's policy does not admit a host-level feature
	// the workload asks for (privileged mode, a host path).
	PolicyDenied RejectReason = 11
	// PortConflict: a host port the workload publishes is taken on the
	// node, by another workload or by something Persys did not start.
	PortConflict RejectReason = 12
	// SpreadLimit: the node already holds the most replicas of the
	// request's group (a service) that one node may.
	SpreadLimit RejectReason = 13
)

// maxReason is the largest RejectReason; Reasons has a bit for each.
const maxReason = SpreadLimit

// String returns the canonical spelling of the reason, the wire enum's
// value name without its prefix (NODE_NOT_READY), for logs, details and
// events alike.
func (r RejectReason) String() string {
	switch r {
	case NodeNotReady:
		return "NODE_NOT_READY"
	case NodeCordoned:
		return "NODE_CORDONED"
	case RuntimeUnsupported:
		return "RUNTIME_UNSUPPORTED"
	case InsufficientCPU:
		return "INSUFFICIENT_CPU"
	case InsufficientMemory:
		return "INSUFFICIENT_MEMORY"
	case InsufficientDisk:
		return "INSUFFICIENT_DISK"
	case SelectorMismatch:
		return "SELECTOR_MISMATCH"
	case NodeDraining:
		return "NODE_DRAINING"
	case CapabilityMissing:
		return "CAPABILITY_MISSING"
	case PoolMissing:
		return "POOL_MISSING"
	case PolicyDenied:
		return "POLICY_DENIED"
	case PortConflict:
		return "PORT_CONFLICT"
	case SpreadLimit:
		return "SPREAD_LIMIT"
	}
	return "RejectReason(" + strconv.Itoa(int(r)) + ")"
}

// Reasons is a set of reject reasons, one bit per reason, so that every
// filter a node fails is recorded without allocating.
type Reasons uint32

// Has reports whether r is in the set.
func (s Reasons) Has(r RejectReason) bool {
	return r > 0 && r <= maxReason && s&(1<<r) != 0
}

func (s Reasons) with(r RejectReason) Reasons { return s | 1<<r }

// Append appends the reasons of the set but skip to dst, in ascending
// order.
func (s Reasons) Append(dst []RejectReason, skip RejectReason) []RejectReason {
	for r := RejectReason(1); r <= maxReason; r++ {
		if r != skip && s.Has(r) {
			dst = append(dst, r)
		}
	}
	return dst
}

// String joins the reasons' names with ", ".
func (s Reasons) String() string {
	var b []byte
	for _, r := range s.Append(nil, 0) {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, r.String()...)
	}
	return string(b)
}

// Strategy chooses among feasible nodes.
type Strategy int

// Strategies.
const (
	// Spread prefers the least allocated node (the default, zero value).
	Spread Strategy = iota
	// BinPack prefers the most allocated node that still fits.
	BinPack
)

// String returns "spread" or "binpack"; other values print as
// "Strategy(N)".
func (s Strategy) String() string {
	switch s {
	case Spread:
		return "spread"
	case BinPack:
		return "binpack"
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseStrategy parses "spread" or "binpack"; the empty string means the
// default, Spread. The error wraps ErrInvalid and names the field
// "strategy".
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "", "spread":
		return Spread, nil
	case "binpack":
		return BinPack, nil
	}
	return 0, fmt.Errorf("strategy: %w: %q is not one of spread, binpack", ErrInvalid, s)
}

// Node is one node of the snapshot.
type Node struct {
	ID       string
	Ready    bool
	Cordoned bool
	// Runtimes are the workload types the node's agent can run.
	Runtimes []model.WorkloadType
	Labels   map[string]string
	// Capacity is what the node offers; Allocated is the sum of the
	// requests already assigned to it. Capacity-Allocated is free.
	Capacity  model.Resources
	Allocated model.Resources
	// Accel is "kvm" or "tcg" on nodes that run VMs.
	Accel string
	// Pools are the node's storage pools with what is placed on them.
	Pools []Pool
	// Policy is what the node's agent lets workloads reach on the host.
	Policy hostaccess.Policy
	// Ports are the host ports taken on the node: those of the workloads
	// assigned to it and those the agent reports bound by something else.
	Ports []hostaccess.Port
	// DynamicFirst..DynamicLast (inclusive) is the range dynamic host
	// ports are picked from; 0 and 0: the node offers none.
	DynamicFirst, DynamicLast uint32
}

// Pool is a storage pool of a node: its capacity and the bytes of the disks
// already placed on it.
type Pool struct {
	Name      string
	Capacity  int64
	Allocated int64
	// Free is the free space the node last reported on the pool's file
	// system (0: not reported); a disk must fit in it too.
	Free int64
}

// avail is what a new disk may take on the pool: the capacity left by
// what is placed there, and no more than the reported free space.
func (p *Pool) avail() int64 {
	a := p.Capacity - p.Allocated
	if p.Free > 0 && p.Free < a {
		a = p.Free
	}
	return a
}

// PoolDemand is what a workload's disks need on one named pool.
type PoolDemand struct {
	Name  string
	Bytes int64
}

// Validate checks a node built from external input; errors name the field.
func (n *Node) Validate() error {
	if n.ID == "" {
		return fmt.Errorf("node.id: %w: must not be empty", ErrInvalid)
	}
	for i, t := range n.Runtimes {
		if !t.Valid() {
			return fmt.Errorf("node %s: runtimes[%d]: %w: unknown workload type %d", n.ID, i, ErrInvalid, int(t))
		}
	}
	if err := n.Capacity.Validate("capacity"); err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	if err := n.Allocated.Validate("allocated"); err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	if (n.DynamicFirst != 0 || n.DynamicLast != 0) && (n.DynamicFirst == 0 || n.DynamicLast < n.DynamicFirst || n.DynamicLast > 65535) {
		return fmt.Errorf("node %s: dynamicPorts: %w: %d-%d is not a range within 1-65535", n.ID, ErrInvalid, n.DynamicFirst, n.DynamicLast)
	}
	return nil
}

// Request is what one workload needs.
type Request struct {
	Workload     string
	Type         model.WorkloadType
	Resources    model.Resources
	NodeSelector map[string]string
	// RequireKVM admits only nodes whose Accel is "kvm".
	RequireKVM bool
	// Pools lists the storage pools the workload's disks use.
	Pools []PoolDemand
	// Host is what the workload asks of its host: the node's policy must
	// admit it and its ports must be free there.
	Host hostaccess.Needs
	// Dynamic are the host ports the workload asks for without a number
	// (Port 0): the node's dynamic range must have as many free.
	Dynamic []hostaccess.Port
	// Spread, when set, spreads the request's group (the replicas of a
	// service) over nodes and over the values of a node label.
	Spread *GroupSpread
}

// GroupSpread is where the other members of a request's group already are.
// The caller counts them; Place only reads the maps.
type GroupSpread struct {
	// MaxPerNode > 0 rejects a node that holds that many already.
	MaxPerNode int
	// PerNode counts the group's members by node id.
	PerNode map[string]int
	// Label, when set, prefers the nodes whose value of that label holds
	// the fewest members (PerValue, by label value; a node without the
	// label counts as the value ""), before the strategy's score.
	Label    string
	PerValue map[string]int
}

// Validate checks a request built from external input; errors name the
// field.
func (r *Request) Validate() error {
	if r.Workload == "" {
		return fmt.Errorf("workload: %w: must not be empty", ErrInvalid)
	}
	if !r.Type.Valid() {
		return fmt.Errorf("type: %w: unknown workload type %d", ErrInvalid, int(r.Type))
	}
	if err := r.Resources.Validate("resources"); err != nil {
		return err
	}
	for k := range r.NodeSelector {
		if k == "" {
			return fmt.Errorf("nodeSelector: %w: empty label key", ErrInvalid)
		}
	}
	return nil
}

// Rejection records why one node was filtered out. Only the fields that the
// reason uses are set:
//
//   - InsufficientCPU/Memory/Disk: Requested, Free (capacity minus
//     allocated, negative when over-committed) and Capacity, in millicores
//     or bytes.
//   - RuntimeUnsupported: Requested holds the requested model.WorkloadType.
//   - SelectorMismatch: Key and Want from the selector, Have the node's
//     value and HasLabel whether the node has the label at all. When several
//     selector labels mismatch, the first key in sorted order is recorded.
//   - PolicyDenied: Key the field the policy refuses, Want the host path
//     (empty for privileged mode).
//   - PortConflict: Key the field of the first requested port that is
//     taken, Requested its number, Want its host address, Have its
//     protocol. When the node's dynamic range is what falls short, Have
//     is "dynamic", Key the field of the first dynamic port, Requested
//     the number of dynamic ports asked for, Free the free ports of the
//     range and Capacity its size (0: the node offers no range).
//
// All holds every reason that rules the node out, Reason among them; the
// structured fields describe Reason only.
//
// There is no Detail field: the text is built by the Detail method when a
// caller needs it (for the wire record or a log line), so that Place does
// no string formatting.
type Rejection struct {
	NodeID    string
	Reason    RejectReason
	Requested int64
	Free      int64
	Capacity  int64
	Key       string
	Want      string
	Have      string
	HasLabel  bool
	All       Reasons
}

// Also appends to dst the reasons other than Reason that rule the node
// out, in ascending order.
func (r Rejection) Also(dst []RejectReason) []RejectReason { return r.All.Append(dst, r.Reason) }

// Detail returns a human-readable explanation, for example
// "cpu: requested 500m, free 250m of 2000m", followed by the names of the
// other reasons that rule the node out: "; also insufficient_memory".
func (r Rejection) Detail() string {
	d := r.detail()
	if also := r.All &^ (1 << r.Reason); also != 0 && r.Reason > 0 && r.Reason <= maxReason {
		d += "; also " + also.String()
	}
	return d
}

func (r Rejection) detail() string {
	switch r.Reason {
	case NodeNotReady:
		return "node is not ready"
	case NodeCordoned:
		return "node is cordoned"
	case RuntimeUnsupported:
		return "runtime " + model.WorkloadType(r.Requested).String() + " is not supported by the node"
	case InsufficientCPU:
		return "cpu: requested " + millis(r.Requested) + ", free " + millis(r.Free) + " of " + millis(r.Capacity)
	case InsufficientMemory:
		return "memory: requested " + bytes(r.Requested) + ", free " + bytes(r.Free) + " of " + bytes(r.Capacity)
	case InsufficientDisk:
		if r.Key != "" {
			return "pool " + r.Key + ": requested " + bytes(r.Requested) + ", free " + bytes(r.Free) + " of " + bytes(r.Capacity)
		}
		return "disk: requested " + bytes(r.Requested) + ", free " + bytes(r.Free) + " of " + bytes(r.Capacity)
	case CapabilityMissing:
		return "the workload requires KVM; the node runs VMs with " + r.Have
	case PoolMissing:
		return "node has no storage pool " + r.Key
	case PolicyDenied:
		// The refusal is worded once, by hostaccess: ask a policy that
		// allows nothing about the one field recorded.
		n := hostaccess.Needs{Privileged: true, PrivilegedField: r.Key}
		if r.Want != "" {
			n = hostaccess.Needs{HostPaths: []hostaccess.Path{{Path: r.Want, Field: r.Key}}}
		}
		d, _ := hostaccess.Policy{}.Admits(n)
		return d.Error()
	case PortConflict:
		if r.Have == dynamicMark {
			if r.Capacity == 0 {
				return r.Key + ": the node offers no dynamic ports (agent flag --dynamic-ports)"
			}
			return r.Key + ": dynamic ports: requested " + strconv.FormatInt(r.Requested, 10) +
				", free " + strconv.FormatInt(r.Free, 10) + " of " + strconv.FormatInt(r.Capacity, 10) + " in the node's range"
		}
		p := hostaccess.Port{HostIP: r.Want, Port: uint32(r.Requested), Protocol: r.Have}
		if r.Key == "" {
			return "port " + p.String() + " is taken"
		}
		return r.Key + ": port " + p.String() + " is taken"
	case SpreadLimit:
		return "the node holds " + strconv.FormatInt(r.Requested, 10) + " replicas of the service, its spread allows " + strconv.FormatInt(r.Capacity, 10) + " per node"
	case SelectorMismatch:
		if !r.HasLabel {
			return "selector " + r.Key + "=" + r.Want + ": node has no label " + r.Key
		}
		return "selector " + r.Key + "=" + r.Want + ": node has " + r.Key + "=" + r.Have
	}
	return r.Reason.String()
}

// String returns "<node>: <reason>: <detail>".
func (r Rejection) String() string {
	return r.NodeID + ": " + r.Reason.String() + ": " + r.Detail()
}

func millis(v int64) string { return strconv.FormatInt(v, 10) + "m" }

// bytes prints a byte count exactly, with the largest binary suffix that
// divides it (Ki, Mi, Gi, Ti), like Kubernetes quantities: "512Mi", "1536Ki",
// "1000".
func bytes(v int64) string {
	const suffixes = "KMGT"
	if v == 0 {
		return "0"
	}
	n, unit := v, -1
	for unit < len(suffixes)-1 && n%1024 == 0 {
		n /= 1024
		unit++
	}
	if unit < 0 {
		return strconv.FormatInt(v, 10)
	}
	return strconv.FormatInt(n, 10) + suffixes[unit:unit+1] + "i"
}

// Decision is the result of one placement.
type Decision struct {
	// NodeID is the chosen node; empty when no node is feasible.
	NodeID string
	// Score is the chosen node's score in [0, 1] (higher is better), less
	// one per member of its group on its value of the spread label.
	Score float64
	// Feasible counts the nodes found to pass every filter among the
	// Scanned ones; Total counts all the nodes given. Without a sample
	// (Sampled false) every node was scanned, so Feasible is the cluster's
	// count; with one it is SampleSize. Scanned-Feasible nodes were
	// rejected.
	Feasible, Total int
	// Scanned counts the nodes the filters ran on: Total, unless Sampled.
	Scanned int
	// Sampled reports that the scan stopped early, after SampleSize
	// feasible nodes (Scanned < Total): NodeID is the best of those, not
	// necessarily of the whole cluster. A decision that places nothing is
	// never sampled.
	Sampled bool
	// Rejections has one entry per filtered-out node, sorted by NodeID.
	// Above FullScanNodes nodes only a decision that places nothing lists
	// them (then every node); a placed one lists none, so that its cost
	// does not grow with the cluster.
	Rejections []Rejection
	// Strategy is the strategy that scored the nodes.
	Strategy Strategy
}

// Placed reports whether a node was chosen.
func (d Decision) Placed() bool { return d.Feasible > 0 }

// label is one node selector entry.
type label struct{ key, value string }

// FullScanNodes is the largest cluster that Place scans in full. At
// 1,024 nodes a full scan costs about 0.1 ms; at 10,000 it costs close to
// a millisecond, more than the scheduler, which places one workload at a
// time, can spend per placement.
const FullScanNodes = 1024

// SampleSize is how many feasible nodes a scan of a cluster larger than
// FullScanNodes scores before it stops. It does not grow with the cluster,
// so neither does the cost of a placement (15-25 µs); a quarter of the
// smallest sampled cluster and 2.5% of 10,000 nodes is still a wide
// choice, and a Sampler's rotating start visits every node in turn.
const SampleSize = 256

// Place filters the nodes and scores the feasible ones. The filters run in
// this order and the first one that fails is the node's recorded reason:
// Ready, not cordoned, runtime supported, KVM when required, the node's
// policy admits the request's host needs, every storage pool exists and
// has room, every node selector label matches, no requested host port is
// taken, the node's dynamic range has a free port for each dynamic one
// (PickDynamic then chooses them), CPU, memory and disk each fit in Capacity-Allocated (a resource
// the request needs never fits on a node with zero capacity for it; a
// resource it does not need is not checked). A rejection also records, in
// All, every other filter the node fails, so that fixing one reason does
// not reveal the next only after another attempt.
//
// Scoring looks at CPU and memory after the request is added. Spread scores
// the mean free fraction (least allocated wins); BinPack scores the mean
// used fraction (most allocated wins). A resource with zero capacity is left
// out of the mean; a node with zero capacity for both scores 0. Equal
// scores are broken by the lexicographically smallest node ID. A strategy
// other than BinPack scores as Spread.
//
// Up to FullScanNodes nodes Place scans and scores every node. Above that
// it samples: it scans from a start node derived from the workload name,
// wrapping around, and stops once SampleSize nodes passed the filters,
// choosing the best of them (equal scores: the first scanned). Every node
// it returns passed every filter; a cluster with fewer feasible nodes than
// SampleSize is scanned in full, and a decision that places nothing lists
// every node's rejection, as a full scan does. Use a Sampler to rotate the
// start instead, which spreads evenly where a fixed per-workload start
// only spreads evenly on average.
//
// Cost: one pass over the scanned nodes with no allocation per node. Up to
// FullScanNodes the only heap allocations are the Rejections slice, grown
// by append so that nothing is reserved for nodes that pass, and the
// sorted selector when it has more than 8 labels; Rejections are sorted
// only when the input was not already in ID order. Above it a placed
// decision allocates nothing (but a large selector), and one that places
// nothing walks the nodes a second time to build its Rejections in a
// single allocation.
func Place(nodes []Node, req Request, strategy Strategy) Decision {
	d, _ := place(nodes, &req, strategy, startOf(req.Workload, len(nodes)))
	return d
}

// Sampler places like Place but rotates where a sampled scan starts, in
// the spirit of kube-scheduler's rotating start index: a Spread scan starts
// just after the node it chose last, so that equal nodes are taken in turn
// and a run of placements over them stays even (k placements on each of n
// nodes after k*n placements); a BinPack scan starts at the node it chose
// last, so that it keeps filling that node while it fits. Clusters of up to FullScanNodes are
// scanned in full, exactly as by Place, whatever the cursor.
//
// The zero value starts at the first node. A Sampler holds no reference to
// the nodes; it is not safe for concurrent use, so callers serialize it
// (the scheduler with the lock it already holds around placement). Its
// cursor is an index into the node slice, so it works best when the
// slice's order is stable between calls (sorted by ID, for example).
type Sampler struct {
	// Next is the index of the node where the next sampled scan starts,
	// taken modulo the number of nodes. Set it to make a test repeatable.
	Next int
}

// Place places req over nodes and moves the cursor past the choice. A
// decision that places nothing leaves the cursor where it was.
func (s *Sampler) Place(nodes []Node, req Request, strategy Strategy) Decision {
	d, next := place(nodes, &req, strategy, s.Next)
	s.Next = next
	return d
}

// startOf derives a sampled scan's start from the workload name (FNV-1a),
// so that Place stays a pure function and different workloads look at
// different parts of a large cluster.
func startOf(workload string, n int) int {
	if n <= FullScanNodes {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(workload); i++ {
		h ^= uint64(workload[i])
		h *= 1099511628211
	}
	return int(h % uint64(n))
}

// place is Place with an explicit start for the sampled scan; it returns
// the decision and the start for the next scan.
func place(nodes []Node, req *Request, strategy Strategy, start int) (Decision, int) {
	if strategy != BinPack {
		strategy = Spread
	}
	n := len(nodes)
	d := Decision{Total: n, Strategy: strategy}

	// Sort the selector once so that the recorded mismatch does not depend
	// on map iteration order. Small selectors stay on the stack.
	var selBuf [8]label
	sel := selBuf[:0]
	for k, v := range req.NodeSelector {
		sel = append(sel, label{k, v})
	}
	slices.SortFunc(sel, func(a, b label) int { return cmp.Compare(a.key, b.key) })

	var bestScore float64
	best := -1
	next := start
	if n <= FullScanNodes {
		for i := range nodes {
			nd := &nodes[i]
			if filter(nd, req, sel) != 0 {
				d.Rejections = append(d.Rejections, rejection(nd, req, sel))
				continue
			}
			d.Feasible++
			s := nodeScore(nd, req, strategy)
			if best < 0 || s > bestScore || (s == bestScore && nd.ID < nodes[best].ID) {
				bestScore, best = s, i
			}
		}
		d.Scanned = n
	} else {
		i := start % n
		if i < 0 {
			i += n
		}
		for d.Scanned < n {
			nd := &nodes[i]
			d.Scanned++
			// Rejections are not recorded here: most scans place, and
			// a placed decision does not need them.
			if filter(nd, req, sel) == 0 {
				d.Feasible++
				// Ties go to the first scanned: no string compare, and
				// with a rotating start equal nodes are taken in turn.
				if s := nodeScore(nd, req, strategy); best < 0 || s > bestScore {
					bestScore, best = s, i
				}
				if d.Feasible == SampleSize {
					break
				}
			}
			if i++; i == n {
				i = 0
			}
		}
		d.Sampled = d.Scanned < n
		if best >= 0 {
			next = best
			if strategy == Spread {
				next = (best + 1) % n
			}
		} else {
			// Nothing fits: every node was rejected and the caller
			// will report why, so record each in input order, as a
			// full scan does, in one allocation.
			d.Rejections = make([]Rejection, n)
			for k := range nodes {
				nd := &nodes[k]
				d.Rejections[k] = rejection(nd, req, sel)
			}
		}
	}
	if best >= 0 {
		d.NodeID = nodes[best].ID
		d.Score = bestScore
	}
	byNode := func(a, b Rejection) int { return cmp.Compare(a.NodeID, b.NodeID) }
	if !slices.IsSortedFunc(d.Rejections, byNode) {
		// Stable, so that duplicate IDs (a caller bug) keep input order.
		slices.SortStableFunc(d.Rejections, byNode)
	}
	return d, next
}

// filter returns the reason of the first failing filter, or 0 when the
// node can take the request. It only compares; rejection builds the record.
// It is the fast path of reasons, which states the same filters in the
// same order for the record of every failing one: a call through reasons
// cost a fifth more per placement. TestPlaceProperties holds the two to
// the same answer.
func filter(n *Node, req *Request, sel []label) RejectReason {
	switch {
	case !n.Ready:
		return NodeNotReady
	case n.Cordoned:
		return NodeCordoned
	case !slices.Contains(n.Runtimes, req.Type):
		return RuntimeUnsupported
	case req.RequireKVM && n.Accel != "kvm":
		return CapabilityMissing
	}
	// The guards keep the calls off the path of the many workloads that
	// ask nothing of their host.
	if h := &req.Host; h.Privileged || len(h.HostPaths) > 0 {
		if _, denied := policyDenial(n, req); denied {
			return PolicyDenied
		}
	}
	for _, pd := range req.Pools {
		p := n.pool(pd.Name)
		if p == nil {
			return PoolMissing
		}
		if pd.Bytes > 0 && pd.Bytes > p.avail() {
			return InsufficientDisk
		}
	}
	for _, l := range sel {
		if have, has := n.Labels[l.key]; !has || have != l.value {
			return SelectorMismatch
		}
	}
	if len(req.Host.Ports) > 0 && len(n.Ports) > 0 {
		if _, taken := portConflict(n, req); taken {
			return PortConflict
		}
	}
	if spreadFull(n, req) {
		return SpreadLimit
	}
	if len(req.Dynamic) > 0 && DynamicFree(n, req) < len(req.Dynamic) {
		return PortConflict
	}
	r, c, a := &req.Resources, &n.Capacity, &n.Allocated
	switch {
	case !fits(r.CPUMillis, c.CPUMillis, a.CPUMillis):
		return InsufficientCPU
	case !fits(r.MemoryBytes, c.MemoryBytes, a.MemoryBytes):
		return InsufficientMemory
	case !fits(r.DiskBytes, c.DiskBytes, a.DiskBytes):
		return InsufficientDisk
	}
	return 0
}

// reasons runs every filter, in filter's order, and returns the first that
// fails and the set of all that fail.
func reasons(n *Node, req *Request, sel []label) (first RejectReason, all Reasons) {
	fail := func(r RejectReason) {
		if first == 0 {
			first = r
		}
		all = all.with(r)
	}
	if !n.Ready {
		fail(NodeNotReady)
	}
	if n.Cordoned {
		fail(NodeCordoned)
	}
	if !slices.Contains(n.Runtimes, req.Type) {
		fail(RuntimeUnsupported)
	}
	if req.RequireKVM && n.Accel != "kvm" {
		fail(CapabilityMissing)
	}
	if _, denied := policyDenial(n, req); denied {
		fail(PolicyDenied)
	}
	for _, pd := range req.Pools {
		if p := n.pool(pd.Name); p == nil {
			fail(PoolMissing)
		} else if pd.Bytes > 0 && pd.Bytes > p.avail() {
			fail(InsufficientDisk)
		}
	}
	for _, l := range sel {
		if have, has := n.Labels[l.key]; !has || have != l.value {
			fail(SelectorMismatch)
			break
		}
	}
	if _, taken := portConflict(n, req); taken {
		fail(PortConflict)
	}
	if spreadFull(n, req) {
		fail(SpreadLimit)
	}
	if len(req.Dynamic) > 0 && DynamicFree(n, req) < len(req.Dynamic) {
		fail(PortConflict)
	}
	r, c, a := &req.Resources, &n.Capacity, &n.Allocated
	if !fits(r.CPUMillis, c.CPUMillis, a.CPUMillis) {
		fail(InsufficientCPU)
	}
	if !fits(r.MemoryBytes, c.MemoryBytes, a.MemoryBytes) {
		fail(InsufficientMemory)
	}
	if !fits(r.DiskBytes, c.DiskBytes, a.DiskBytes) {
		fail(InsufficientDisk)
	}
	return first, all
}

// policyDenial returns the first host-level need of req that the node's
// policy refuses (Path empty: privileged mode). It allocates nothing, so
// the full Denial text is left to Rejection.Detail.
func policyDenial(n *Node, req *Request) (hostaccess.Path, bool) {
	h := &req.Host
	if h.Privileged && !n.Policy.AllowPrivileged {
		return hostaccess.Path{Field: h.PrivilegedField}, true
	}
	for _, hp := range h.HostPaths {
		if !n.Policy.AllowsPath(hp.Path) {
			return hp, true
		}
	}
	return hostaccess.Path{}, false
}

// portConflict returns the first requested host port that conflicts with
// one taken on the node.
func portConflict(n *Node, req *Request) (hostaccess.Port, bool) {
	for _, want := range req.Host.Ports {
		for _, taken := range n.Ports {
			if want.Conflicts(taken) {
				return want, true
			}
		}
	}
	return hostaccess.Port{}, false
}

// dynamicMark in Rejection.Have marks a PortConflict of the dynamic range.
const dynamicMark = "dynamic"

// rangeSize is the number of ports in the node's dynamic range.
func rangeSize(n *Node) int {
	if n.DynamicFirst == 0 || n.DynamicLast < n.DynamicFirst {
		return 0
	}
	return int(n.DynamicLast-n.DynamicFirst) + 1
}

// dynamicTaken reports whether port number p cannot be given out as a
// dynamic port on n: a port taken on the node, or asked for statically by
// req, has that number. Any address and protocol count, so that a chosen
// number is free for every mapping whatever its address and protocol.
func dynamicTaken(n *Node, req *Request, p uint32) bool {
	for i := range n.Ports {
		if n.Ports[i].Port == p {
			return true
		}
	}
	for i := range req.Host.Ports {
		if req.Host.Ports[i].Port == p {
			return true
		}
	}
	return false
}

// DynamicFree counts the port numbers of n's dynamic range that
// PickDynamic could give req. It allocates nothing: each taken number in
// the range is counted once, at its first occurrence.
func DynamicFree(n *Node, req *Request) int {
	size := rangeSize(n)
	if size == 0 {
		return 0
	}
	taken := 0
	in := func(p uint32) bool { return p >= n.DynamicFirst && p <= n.DynamicLast }
	for i := range n.Ports {
		p := n.Ports[i].Port
		if in(p) && !slices.ContainsFunc(n.Ports[:i], func(q hostaccess.Port) bool { return q.Port == p }) {
			taken++
		}
	}
	for i := range req.Host.Ports {
		p := req.Host.Ports[i].Port
		if in(p) && !slices.ContainsFunc(n.Ports, func(q hostaccess.Port) bool { return q.Port == p }) &&
			!slices.ContainsFunc(req.Host.Ports[:i], func(q hostaccess.Port) bool { return q.Port == p }) {
			taken++
		}
	}
	return size - taken
}

// PickDynamic chooses the host ports of req's dynamic mappings on n: the
// lowest free numbers of n's range, in order, so that the same snapshot
// always gives the same ports. It appends them to dst and reports false
// when the range has too few free (Place rules such a node out).
func PickDynamic(n *Node, req *Request, dst []uint32) ([]uint32, bool) {
	need := len(req.Dynamic)
	if need == 0 {
		return dst, true
	}
	if rangeSize(n) == 0 {
		return dst, false
	}
	for p := n.DynamicFirst; need > 0; p++ {
		if !dynamicTaken(n, req, p) {
			dst = append(dst, p)
			need--
		}
		if p == n.DynamicLast {
			break
		}
	}
	return dst, need == 0
}

// rejection builds the structured record for a node that filter rejected,
// running every filter so that All holds each reason that rules it out;
// only rejected nodes pay for it.
func rejection(n *Node, req *Request, sel []label) Rejection {
	reason, all := reasons(n, req, sel)
	rej := Rejection{NodeID: n.ID, Reason: reason, All: all}
	switch reason {
	case RuntimeUnsupported:
		rej.Requested = int64(req.Type)
	case SelectorMismatch:
		for _, l := range sel {
			if have, has := n.Labels[l.key]; !has || have != l.value {
				rej.Key, rej.Want, rej.Have, rej.HasLabel = l.key, l.value, have, has
				break
			}
		}
	case InsufficientCPU:
		rej.Requested, rej.Capacity, rej.Free = req.Resources.CPUMillis, n.Capacity.CPUMillis, n.Capacity.CPUMillis-n.Allocated.CPUMillis
	case InsufficientMemory:
		rej.Requested, rej.Capacity, rej.Free = req.Resources.MemoryBytes, n.Capacity.MemoryBytes, n.Capacity.MemoryBytes-n.Allocated.MemoryBytes
	case CapabilityMissing:
		rej.Have = n.Accel
		if rej.Have == "" {
			rej.Have = "none"
		}
	case PolicyDenied:
		p, _ := policyDenial(n, req)
		rej.Key, rej.Want = p.Field, p.Path
	case PortConflict:
		p, taken := portConflict(n, req)
		rej.Key, rej.Want, rej.Have, rej.Requested = p.Field, p.HostIP, p.Proto(), int64(p.Port)
		if !taken {
			rej.Key, rej.Want, rej.Have, rej.Requested = req.Dynamic[0].Field, "", dynamicMark, int64(len(req.Dynamic))
			rej.Free, rej.Capacity = int64(DynamicFree(n, req)), int64(rangeSize(n))
		}
	case SpreadLimit:
		rej.Requested, rej.Capacity = int64(req.Spread.PerNode[n.ID]), int64(req.Spread.MaxPerNode)
	case PoolMissing:
		for _, pd := range req.Pools {
			if n.pool(pd.Name) == nil {
				rej.Key = pd.Name
				break
			}
		}
	case InsufficientDisk:
		for _, pd := range req.Pools {
			if p := n.pool(pd.Name); p != nil && pd.Bytes > 0 && pd.Bytes > p.avail() {
				rej.Key, rej.Requested, rej.Capacity, rej.Free = pd.Name, pd.Bytes, p.Capacity, p.avail()
				return rej
			}
		}
		rej.Requested, rej.Capacity, rej.Free = req.Resources.DiskBytes, n.Capacity.DiskBytes, n.Capacity.DiskBytes-n.Allocated.DiskBytes
	}
	return rej
}

// pool returns the node's pool of that name, or nil.
func (n *Node) pool(name string) *Pool {
	for i := range n.Pools {
		if n.Pools[i].Name == name {
			return &n.Pools[i]
		}
	}
	return nil
}

// fits mirrors model.Resources.Fits for one resource, and spells out that a
// needed resource never fits on zero capacity (even if Allocated is
// negative in a malformed snapshot).
func fits(requested, capacity, allocated int64) bool {
	if requested <= 0 {
		return true
	}
	return capacity > 0 && requested <= capacity-allocated
}

// score returns the node's score for the strategy, higher is better.
// spreadFull reports whether the node holds as many of the request's
// group as one node may.
func spreadFull(n *Node, req *Request) bool {
	sp := req.Spread
	return sp != nil && sp.MaxPerNode > 0 && sp.PerNode[n.ID] >= sp.MaxPerNode
}

// nodeScore is score, lowered by one per member of the request's group
// on the node's value of the spread label: a less used value always wins,
// and the strategy decides among the nodes of equally used values.
func nodeScore(n *Node, req *Request, strategy Strategy) float64 {
	s := score(n, req.Resources, strategy)
	if sp := req.Spread; sp != nil && sp.Label != "" {
		s -= float64(sp.PerValue[n.Labels[sp.Label]])
	}
	return s
}

func score(n *Node, r model.Resources, strategy Strategy) float64 {
	var sum float64
	var dims int
	if c := n.Capacity.CPUMillis; c > 0 {
		sum += float64(n.Allocated.CPUMillis+r.CPUMillis) / float64(c)
		dims++
	}
	if c := n.Capacity.MemoryBytes; c > 0 {
		sum += float64(n.Allocated.MemoryBytes+r.MemoryBytes) / float64(c)
		dims++
	}
	if dims == 0 {
		return 0
	}
	used := sum / float64(dims)
	if strategy == BinPack {
		return used
	}
	return 1 - used
}
