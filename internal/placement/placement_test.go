package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/model"
)

const (
	mi = int64(1) << 20
	gi = int64(1) << 30
)

var allRuntimes = []model.WorkloadType{model.WorkloadContainer, model.WorkloadCompose, model.WorkloadVM}

// node returns a ready, uncordoned node offering every runtime with
// 2000m CPU, 4Gi memory and 100Gi disk, nothing allocated; opts adjust it.
func node(id string, opts ...func(*Node)) Node {
	n := Node{
		ID:       id,
		Ready:    true,
		Runtimes: allRuntimes,
		Capacity: model.Resources{CPUMillis: 2000, MemoryBytes: 4 * gi, DiskBytes: 100 * gi},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func notReady(n *Node) { n.Ready = false }
func cordoned(n *Node) { n.Cordoned = true }
func runtimes(ts ...model.WorkloadType) func(*Node) {
	return func(n *Node) { n.Runtimes = ts }
}
func labels(kv ...string) func(*Node) {
	return func(n *Node) {
		n.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}
func capacity(cpu, mem, disk int64) func(*Node) {
	return func(n *Node) { n.Capacity = model.Resources{CPUMillis: cpu, MemoryBytes: mem, DiskBytes: disk} }
}
func allocated(cpu, mem, disk int64) func(*Node) {
	return func(n *Node) { n.Allocated = model.Resources{CPUMillis: cpu, MemoryBytes: mem, DiskBytes: disk} }
}

func request(cpu, mem, disk int64, selector ...string) Request {
	r := Request{
		Workload:  "web",
		Type:      model.WorkloadContainer,
		Resources: model.Resources{CPUMillis: cpu, MemoryBytes: mem, DiskBytes: disk},
	}
	if len(selector) > 0 {
		r.NodeSelector = map[string]string{}
		for i := 0; i < len(selector); i += 2 {
			r.NodeSelector[selector[i]] = selector[i+1]
		}
	}
	return r
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name           string
		nodes          []Node
		req            Request
		strategy       Strategy
		wantNode       string
		wantScore      float64
		wantFeasible   int
		wantRejections []Rejection
		wantStrategy   Strategy
	}{
		{
			name: "no nodes",
			req:  request(100, mi, 0),
		},
		{
			name:           "not ready",
			nodes:          []Node{node("a", notReady)},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: NodeNotReady}},
		},
		{
			name:           "not ready is checked before cordoned",
			nodes:          []Node{node("a", notReady, cordoned, runtimes())},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: NodeNotReady, All: only(NodeNotReady, NodeCordoned, RuntimeUnsupported)}},
		},
		{
			name:           "cordoned",
			nodes:          []Node{node("a", cordoned)},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: NodeCordoned}},
		},
		{
			name:           "cordoned is checked before runtime",
			nodes:          []Node{node("a", cordoned, runtimes())},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: NodeCordoned, All: only(NodeCordoned, RuntimeUnsupported)}},
		},
		{
			name:           "runtime unsupported",
			nodes:          []Node{node("a", runtimes(model.WorkloadCompose, model.WorkloadVM))},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: RuntimeUnsupported, Requested: int64(model.WorkloadContainer)}},
		},
		{
			name:           "node without runtimes",
			nodes:          []Node{node("a", runtimes())},
			req:            request(100, mi, 0),
			wantRejections: []Rejection{{NodeID: "a", Reason: RuntimeUnsupported, Requested: 1}},
		},
		{
			name:           "runtime is checked before selector",
			nodes:          []Node{node("a", runtimes(model.WorkloadVM))},
			req:            request(100, mi, 0, "zone", "eu"),
			wantRejections: []Rejection{{NodeID: "a", Reason: RuntimeUnsupported, Requested: 1, All: only(RuntimeUnsupported, SelectorMismatch)}},
		},
		{
			name:         "selector matches",
			nodes:        []Node{node("a", labels("zone", "eu", "disk", "ssd", "extra", "x"))},
			req:          request(0, 0, 0, "zone", "eu", "disk", "ssd"),
			wantNode:     "a",
			wantScore:    1,
			wantFeasible: 1,
		},
		{
			name:  "selector value mismatch",
			nodes: []Node{node("a", labels("zone", "us"))},
			req:   request(100, mi, 0, "zone", "eu"),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: SelectorMismatch, Key: "zone", Want: "eu", Have: "us", HasLabel: true,
			}},
		},
		{
			name:  "selector label missing",
			nodes: []Node{node("a")},
			req:   request(100, mi, 0, "zone", "eu"),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: SelectorMismatch, Key: "zone", Want: "eu",
			}},
		},
		{
			name:  "selector wants empty value, node lacks label",
			nodes: []Node{node("a", labels("other", ""))},
			req:   request(100, mi, 0, "gpu", ""),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: SelectorMismatch, Key: "gpu",
			}},
		},
		{
			name:  "several selector mismatches record the first key in sorted order",
			nodes: []Node{node("a", labels("a", "1", "m", "2", "z", "3"))},
			req:   request(100, mi, 0, "z", "x", "a", "1", "m", "x", "b", "x"),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: SelectorMismatch, Key: "b", Want: "x",
			}},
		},
		{
			name:  "selector is checked before resources",
			nodes: []Node{node("a", labels("zone", "us"), capacity(0, 0, 0))},
			req:   request(100, mi, gi, "zone", "eu"),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: SelectorMismatch, Key: "zone", Want: "eu", Have: "us", HasLabel: true,
				All: only(SelectorMismatch, InsufficientCPU, InsufficientMemory, InsufficientDisk),
			}},
		},
		{
			name:  "insufficient cpu",
			nodes: []Node{node("a", allocated(1750, 0, 0))},
			req:   request(500, mi, 0),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientCPU, Requested: 500, Free: 250, Capacity: 2000,
			}},
		},
		{
			name:  "cpu is checked before memory and disk",
			nodes: []Node{node("a", capacity(100, mi, 0))},
			req:   request(200, 2*mi, gi),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientCPU, Requested: 200, Free: 100, Capacity: 100,
				All: only(InsufficientCPU, InsufficientMemory, InsufficientDisk),
			}},
		},
		{
			name:  "insufficient memory",
			nodes: []Node{node("a", allocated(0, 3*gi, 0))},
			req:   request(100, 2*gi, gi),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientMemory, Requested: 2 * gi, Free: gi, Capacity: 4 * gi,
			}},
		},
		{
			name:  "insufficient disk",
			nodes: []Node{node("a", allocated(0, 0, 99*gi))},
			req:   request(100, mi, 2*gi),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientDisk, Requested: 2 * gi, Free: gi, Capacity: 100 * gi,
			}},
		},
		{
			name:  "over-committed node reports negative free",
			nodes: []Node{node("a", allocated(0, 5*gi, 0))},
			req:   request(100, mi, 0),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientMemory, Requested: mi, Free: -gi, Capacity: 4 * gi,
			}},
		},
		{
			name:  "zero capacity for a needed resource is infeasible",
			nodes: []Node{node("a", capacity(2000, 4*gi, 0))},
			req:   request(100, mi, 1),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientDisk, Requested: 1, Free: 0, Capacity: 0,
			}},
		},
		{
			name:  "zero capacity is infeasible even with negative allocation",
			nodes: []Node{node("a", capacity(0, 4*gi, 0), allocated(-500, 0, 0))},
			req:   request(100, mi, 0),
			wantRejections: []Rejection{{
				NodeID: "a", Reason: InsufficientCPU, Requested: 100, Free: 500, Capacity: 0,
			}},
		},
		{
			name:         "zero capacity for an unneeded resource is fine",
			nodes:        []Node{node("a", capacity(2000, 4*gi, 0))},
			req:          request(1000, 2*gi, 0),
			wantNode:     "a",
			wantScore:    0.5,
			wantFeasible: 1,
		},
		{
			name:         "over-committed resource the request does not need is not checked",
			nodes:        []Node{node("a", allocated(0, 0, 200*gi))},
			req:          request(1000, 2*gi, 0),
			wantNode:     "a",
			wantScore:    0.5,
			wantFeasible: 1,
		},
		{
			name:         "exact fit",
			nodes:        []Node{node("a", allocated(1500, 3*gi, 90*gi))},
			req:          request(500, gi, 10*gi),
			wantNode:     "a",
			wantScore:    0,
			wantFeasible: 1,
		},
		{
			name:         "exact fit with binpack scores 1",
			nodes:        []Node{node("a", allocated(1500, 3*gi, 90*gi))},
			req:          request(500, gi, 10*gi),
			strategy:     BinPack,
			wantNode:     "a",
			wantScore:    1,
			wantFeasible: 1,
			wantStrategy: BinPack,
		},
		{
			name: "spread picks the least allocated node",
			nodes: []Node{
				node("a", allocated(1000, 2*gi, 0)), // after: cpu .75, mem .75 -> free .25
				node("b", allocated(0, 0, 0)),       // after: cpu .25, mem .25 -> free .75
				node("c", allocated(500, gi, 0)),    // after: .5 -> free .5
			},
			req:          request(500, gi, 0),
			wantNode:     "b",
			wantScore:    0.75,
			wantFeasible: 3,
		},
		{
			name: "binpack picks the most allocated node that fits",
			nodes: []Node{
				node("a", allocated(1000, 2*gi, 0)),
				node("b", allocated(0, 0, 0)),
				node("c", allocated(500, gi, 0)),
				node("d", allocated(1800, 0, 0)), // does not fit
			},
			req:          request(500, gi, 0),
			strategy:     BinPack,
			wantNode:     "a",
			wantScore:    0.75,
			wantFeasible: 3,
			wantRejections: []Rejection{{
				NodeID: "d", Reason: InsufficientCPU, Requested: 500, Free: 200, Capacity: 2000,
			}},
			wantStrategy: BinPack,
		},
		{
			name: "spread scores the mean of cpu and memory",
			nodes: []Node{
				node("a", allocated(1500, 0, 0)),   // free after: cpu 0, mem .75 -> .375
				node("b", allocated(500, 2*gi, 0)), // free after: cpu .5, mem .25 -> .375
				node("c", allocated(0, 3*gi, 0)),   // free after: cpu .75, mem 0 -> .375
				node("d", allocated(500, gi, 0)),   // free after: cpu .5, mem .5 -> .5
			},
			req:          request(500, gi, 0),
			wantNode:     "d",
			wantScore:    0.5,
			wantFeasible: 4,
		},
		{
			name: "disk does not count in the score",
			nodes: []Node{
				node("a", allocated(0, 0, 99*gi)),
				node("b", allocated(100, 0, 0)),
			},
			req:          request(100, gi, gi),
			wantNode:     "a",
			wantScore:    (1 - 100.0/2000 + 0.75) / 2,
			wantFeasible: 2,
		},
		{
			name: "tie is broken by the smallest node id",
			nodes: []Node{
				node("node-c"), node("node-a"), node("node-b"),
			},
			req:          request(500, gi, 0),
			wantNode:     "node-a",
			wantScore:    0.75,
			wantFeasible: 3,
		},
		{
			name: "tie with binpack is broken by the smallest node id",
			nodes: []Node{
				node("z", allocated(1000, 2*gi, 0)),
				node("y", allocated(1000, 2*gi, 0)),
				node("x"),
			},
			req:          request(500, gi, 0),
			strategy:     BinPack,
			wantNode:     "y",
			wantScore:    0.75,
			wantFeasible: 3,
			wantStrategy: BinPack,
		},
		{
			name: "tie between different capacities with equal fractions",
			nodes: []Node{
				node("big", capacity(4000, 8*gi, 0), allocated(1000, 2*gi, 0)),
				node("small", capacity(2000, 4*gi, 0), allocated(0, 0, 0)),
			},
			req:          request(1000, 2*gi, 0),
			wantNode:     "big",
			wantScore:    0.5,
			wantFeasible: 2,
		},
		{
			name: "node with no cpu or memory capacity scores 0",
			nodes: []Node{
				node("a", capacity(0, 0, 10*gi)),
				node("b", capacity(0, 0, 10*gi)),
			},
			req:          request(0, 0, gi),
			strategy:     BinPack,
			wantNode:     "a",
			wantScore:    0,
			wantFeasible: 2,
			wantStrategy: BinPack,
		},
		{
			name:         "unknown strategy scores as spread",
			nodes:        []Node{node("a", allocated(1000, 2*gi, 0)), node("b")},
			req:          request(500, gi, 0),
			strategy:     Strategy(42),
			wantNode:     "b",
			wantScore:    0.75,
			wantFeasible: 2,
		},
		{
			name: "all infeasible lists every node's reason sorted by id",
			nodes: []Node{
				node("n7", labels("zone", "us")),
				node("n3", runtimes(model.WorkloadVM)),
				node("n1", notReady),
				node("n6", allocated(0, 0, 100*gi)),
				node("n2", cordoned),
				node("n5", allocated(0, 4*gi, 0), labels("zone", "eu")),
				node("n4", allocated(2000, 0, 0), labels("zone", "eu")),
			},
			req: request(500, gi, gi, "zone", "eu"),
			wantRejections: []Rejection{
				{NodeID: "n1", Reason: NodeNotReady, All: only(NodeNotReady, SelectorMismatch)},
				{NodeID: "n2", Reason: NodeCordoned, All: only(NodeCordoned, SelectorMismatch)},
				{NodeID: "n3", Reason: RuntimeUnsupported, Requested: 1, All: only(RuntimeUnsupported, SelectorMismatch)},
				{NodeID: "n4", Reason: InsufficientCPU, Requested: 500, Free: 0, Capacity: 2000},
				{NodeID: "n5", Reason: InsufficientMemory, Requested: gi, Free: 0, Capacity: 4 * gi},
				{NodeID: "n6", Reason: SelectorMismatch, Key: "zone", Want: "eu", All: only(SelectorMismatch, InsufficientDisk)},
				{NodeID: "n7", Reason: SelectorMismatch, Key: "zone", Want: "eu", Have: "us", HasLabel: true},
			},
		},
		{
			name: "feasible and rejected nodes mixed",
			nodes: []Node{
				node("c", cordoned),
				node("b", allocated(1000, 0, 0)),
				node("a", notReady),
				node("d"),
			},
			req:          request(1000, 0, 0),
			wantNode:     "d",
			wantScore:    0.75,
			wantFeasible: 2,
			wantRejections: []Rejection{
				{NodeID: "a", Reason: NodeNotReady},
				{NodeID: "c", Reason: NodeCordoned},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Place(tt.nodes, tt.req, tt.strategy)
			if d.NodeID != tt.wantNode {
				t.Errorf("NodeID = %q, want %q", d.NodeID, tt.wantNode)
			}
			if d.Placed() != (tt.wantNode != "") {
				t.Errorf("Placed = %v, want %v", d.Placed(), tt.wantNode != "")
			}
			if math.Abs(d.Score-tt.wantScore) > 1e-12 {
				t.Errorf("Score = %v, want %v", d.Score, tt.wantScore)
			}
			if d.Feasible != tt.wantFeasible {
				t.Errorf("Feasible = %d, want %d", d.Feasible, tt.wantFeasible)
			}
			if d.Total != len(tt.nodes) {
				t.Errorf("Total = %d, want %d", d.Total, len(tt.nodes))
			}
			if d.Strategy != tt.wantStrategy {
				t.Errorf("Strategy = %v, want %v", d.Strategy, tt.wantStrategy)
			}
			// A case that lists no other reasons (All unset) says the
			// node fails its Reason alone.
			want := slices.Clone(tt.wantRejections)
			for i := range want {
				if want[i].All == 0 {
					want[i].All = only(want[i].Reason)
				}
			}
			if !slices.Equal(d.Rejections, want) {
				t.Errorf("Rejections:\n got %+v\nwant %+v", d.Rejections, want)
			}
		})
	}
}

// only returns the set of the given reasons.
func only(rs ...RejectReason) Reasons {
	var s Reasons
	for _, r := range rs {
		s = s.with(r)
	}
	return s
}

func TestRejectionDetail(t *testing.T) {
	tests := []struct {
		name string
		rej  Rejection
		want string
	}{
		{name: "not ready", rej: Rejection{NodeID: "n1", Reason: NodeNotReady}, want: "n1: NODE_NOT_READY: node is not ready"},
		{name: "cordoned", rej: Rejection{NodeID: "n1", Reason: NodeCordoned}, want: "n1: NODE_CORDONED: node is cordoned"},
		{
			name: "runtime",
			rej:  Rejection{NodeID: "n1", Reason: RuntimeUnsupported, Requested: int64(model.WorkloadVM)},
			want: "n1: RUNTIME_UNSUPPORTED: runtime vm is not supported by the node",
		},
		{
			name: "cpu",
			rej:  Rejection{NodeID: "n1", Reason: InsufficientCPU, Requested: 500, Free: 250, Capacity: 2000},
			want: "n1: INSUFFICIENT_CPU: cpu: requested 500m, free 250m of 2000m",
		},
		{
			name: "memory",
			rej:  Rejection{NodeID: "n1", Reason: InsufficientMemory, Requested: 512 * mi, Free: -gi, Capacity: 1536 * 1024},
			want: "n1: INSUFFICIENT_MEMORY: memory: requested 512Mi, free -1Gi of 1536Ki",
		},
		{
			name: "disk",
			rej:  Rejection{NodeID: "n1", Reason: InsufficientDisk, Requested: 1000, Free: 0, Capacity: 2 << 40},
			want: "n1: INSUFFICIENT_DISK: disk: requested 1000, free 0 of 2Ti",
		},
		{
			name: "disk beyond the largest suffix",
			rej:  Rejection{NodeID: "n1", Reason: InsufficientDisk, Requested: 1 << 50, Free: 1023, Capacity: 1 << 51},
			want: "n1: INSUFFICIENT_DISK: disk: requested 1024Ti, free 1023 of 2048Ti",
		},
		{
			name: "selector value",
			rej:  Rejection{NodeID: "n1", Reason: SelectorMismatch, Key: "zone", Want: "eu", Have: "us", HasLabel: true},
			want: "n1: SELECTOR_MISMATCH: selector zone=eu: node has zone=us",
		},
		{
			name: "selector missing",
			rej:  Rejection{NodeID: "n1", Reason: SelectorMismatch, Key: "zone", Want: "eu"},
			want: "n1: SELECTOR_MISMATCH: selector zone=eu: node has no label zone",
		},
		{name: "unknown reason", rej: Rejection{NodeID: "n1", Reason: 99}, want: "n1: RejectReason(99): RejectReason(99)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rej.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnums(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "reason numbers match proto", got: fmt.Sprint(int(NodeNotReady), int(NodeCordoned), int(RuntimeUnsupported),
			int(InsufficientCPU), int(InsufficientMemory), int(InsufficientDisk), int(SelectorMismatch), int(NodeDraining),
			int(CapabilityMissing), int(PoolMissing), int(PolicyDenied), int(PortConflict), int(SpreadLimit)), want: "1 2 3 4 5 6 7 8 9 10 11 12 13"},
		{name: "reason names", got: fmt.Sprint(NodeNotReady, NodeCordoned, RuntimeUnsupported, InsufficientCPU,
			InsufficientMemory, InsufficientDisk, SelectorMismatch, NodeDraining, CapabilityMissing, PoolMissing,
			PolicyDenied, PortConflict, SpreadLimit, RejectReason(0), maxReason+1),
			want: "NODE_NOT_READY NODE_CORDONED RUNTIME_UNSUPPORTED INSUFFICIENT_CPU INSUFFICIENT_MEMORY INSUFFICIENT_DISK SELECTOR_MISMATCH " +
				"NODE_DRAINING CAPABILITY_MISSING POOL_MISSING POLICY_DENIED PORT_CONFLICT SPREAD_LIMIT RejectReason(0) RejectReason(14)"},
		{name: "reason sets", got: fmt.Sprint(only(PortConflict, NodeNotReady), Reasons(0), only(PolicyDenied).Has(maxReason+1)),
			want: "NODE_NOT_READY, PORT_CONFLICT  false"},
		{name: "strategy names", got: fmt.Sprint(Spread, BinPack, Strategy(9)), want: "spread binpack Strategy(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestParseStrategy(t *testing.T) {
	tests := []struct {
		in      string
		want    Strategy
		wantErr bool
	}{
		{in: "", want: Spread},
		{in: "spread", want: Spread},
		{in: "binpack", want: BinPack},
		{in: "BinPack", wantErr: true},
		{in: "bin-pack", wantErr: true},
		{in: "random", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			got, err := ParseStrategy(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "strategy:") {
					t.Fatalf("ParseStrategy(%q) error = %v, want a field-named ErrInvalid", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStrategy(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in && tt.in != "" {
				t.Fatalf("String() = %q does not round-trip %q", got.String(), tt.in)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string // prefix; empty means valid
	}{
		{name: "valid node", err: ptr(node("a")).Validate()},
		{name: "node without id", err: ptr(node("")).Validate(), wantErr: "node.id:"},
		{name: "node with unknown runtime", err: ptr(node("a", runtimes(model.WorkloadContainer, 0))).Validate(), wantErr: "node a: runtimes[1]:"},
		{name: "node with negative capacity", err: ptr(node("a", capacity(-1, 0, 0))).Validate(), wantErr: "node a: capacity.cpuMillis:"},
		{name: "node with negative allocation", err: ptr(node("a", allocated(0, 0, -1))).Validate(), wantErr: "node a: allocated.diskBytes:"},
		{name: "valid request", err: ptr(request(1, 1, 1, "zone", "eu")).Validate()},
		{name: "request without workload", err: (&Request{Type: model.WorkloadVM}).Validate(), wantErr: "workload:"},
		{name: "request without type", err: (&Request{Workload: "w"}).Validate(), wantErr: "type:"},
		{name: "request with negative memory", err: ptr(request(0, -1, 0)).Validate(), wantErr: "resources.memoryBytes:"},
		{name: "request with empty selector key", err: ptr(request(0, 0, 0, "", "x")).Validate(), wantErr: "nodeSelector:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr == "" {
				if tt.err != nil {
					t.Fatalf("unexpected error %v", tt.err)
				}
				return
			}
			if tt.err == nil || !strings.HasPrefix(tt.err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want prefix %q", tt.err, tt.wantErr)
			}
			if !errors.Is(tt.err, ErrInvalid) && !errors.Is(tt.err, model.ErrInvalid) {
				t.Fatalf("error %v wraps no ErrInvalid", tt.err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// randomCluster builds a random snapshot with unique IDs; labels come from a
// small alphabet so that selectors sometimes match.
func randomCluster(rng *rand.Rand, n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nd := Node{
			ID:       fmt.Sprintf("node-%03d", rng.Intn(1000)*1000+i),
			Ready:    rng.Intn(10) != 0,
			Cordoned: rng.Intn(10) == 0,
			Labels:   map[string]string{},
		}
		for _, t := range allRuntimes {
			if rng.Intn(4) != 0 {
				nd.Runtimes = append(nd.Runtimes, t)
			}
		}
		for _, k := range []string{"zone", "disk"} {
			if rng.Intn(3) != 0 {
				nd.Labels[k] = fmt.Sprint(rng.Intn(2))
			}
		}
		nd.Capacity = model.Resources{
			CPUMillis:   int64(rng.Intn(5)) * 1000,
			MemoryBytes: int64(rng.Intn(5)) * gi,
			DiskBytes:   int64(rng.Intn(3)) * 10 * gi,
		}
		// Allocations may exceed capacity (over-committed nodes).
		nd.Allocated = model.Resources{
			CPUMillis:   rng.Int63n(nd.Capacity.CPUMillis + 500),
			MemoryBytes: rng.Int63n(nd.Capacity.MemoryBytes + gi),
			DiskBytes:   rng.Int63n(nd.Capacity.DiskBytes + gi),
		}
		nd.Policy.AllowPrivileged = rng.Intn(2) == 0
		for _, p := range randomPorts {
			if rng.Intn(6) == 0 {
				nd.Ports = append(nd.Ports, p)
			}
		}
		nodes[i] = nd
	}
	return nodes
}

func randomRequest(rng *rand.Rand) Request {
	req := Request{
		Workload: "w",
		Type:     allRuntimes[rng.Intn(len(allRuntimes))],
		Resources: model.Resources{
			CPUMillis:   rng.Int63n(3) * rng.Int63n(1500),
			MemoryBytes: rng.Int63n(3) * rng.Int63n(2*gi),
			DiskBytes:   rng.Int63n(3) * rng.Int63n(10*gi),
		},
		NodeSelector: map[string]string{},
	}
	for _, k := range []string{"zone", "disk"} {
		if rng.Intn(3) == 0 {
			req.NodeSelector[k] = fmt.Sprint(rng.Intn(2))
		}
	}
	if rng.Intn(4) == 0 {
		req.Host.Privileged, req.Host.PrivilegedField = true, "spec.container.privileged"
	}
	for _, p := range randomPorts {
		if rng.Intn(6) == 0 {
			req.Host.Ports = append(req.Host.Ports, p)
		}
	}
	return req
}

// randomPorts are the host ports random nodes take and random requests
// ask for: some conflict (same number, one on every address), some not.
var randomPorts = []hostaccess.Port{
	{Port: 80}, {HostIP: "127.0.0.1", Port: 8080}, {HostIP: "127.0.0.2", Port: 8080}, {Port: 53, Protocol: "udp"},
}

// sortedSelector is the request's selector as place passes it to filter.
func sortedSelector(req Request) []label {
	var sel []label
	for k, v := range req.NodeSelector {
		sel = append(sel, label{k, v})
	}
	slices.SortFunc(sel, func(a, b label) int { return strings.Compare(a.key, b.key) })
	return sel
}

// failing is a slow, independent statement of every filter a node fails.
func failing(n Node, req Request) Reasons {
	var s Reasons
	add := func(fails bool, r RejectReason) {
		if fails {
			s = s.with(r)
		}
	}
	add(!n.Ready, NodeNotReady)
	add(n.Cordoned, NodeCordoned)
	add(!slices.Contains(n.Runtimes, req.Type), RuntimeUnsupported)
	add(req.Host.Privileged && !n.Policy.AllowPrivileged, PolicyDenied)
	for k, v := range req.NodeSelector {
		have, ok := n.Labels[k]
		add(!ok || have != v, SelectorMismatch)
	}
	for _, w := range req.Host.Ports {
		for _, p := range n.Ports {
			add(w.Conflicts(p), PortConflict)
		}
	}
	free := n.Capacity.Sub(n.Allocated)
	add(req.Resources.CPUMillis > 0 && (n.Capacity.CPUMillis <= 0 || req.Resources.CPUMillis > free.CPUMillis), InsufficientCPU)
	add(req.Resources.MemoryBytes > 0 && (n.Capacity.MemoryBytes <= 0 || req.Resources.MemoryBytes > free.MemoryBytes), InsufficientMemory)
	add(req.Resources.DiskBytes > 0 && (n.Capacity.DiskBytes <= 0 || req.Resources.DiskBytes > free.DiskBytes), InsufficientDisk)
	return s
}

// feasible is a slow, independent statement of the filters.
func feasible(n Node, req Request) bool {
	if !n.Ready || n.Cordoned || !slices.Contains(n.Runtimes, req.Type) {
		return false
	}
	if req.Host.Privileged && !n.Policy.AllowPrivileged {
		return false
	}
	for _, w := range req.Host.Ports {
		for _, p := range n.Ports {
			if w.Conflicts(p) {
				return false
			}
		}
	}
	for k, v := range req.NodeSelector {
		if have, ok := n.Labels[k]; !ok || have != v {
			return false
		}
	}
	return req.Resources.Fits(n.Capacity.Sub(n.Allocated))
}

// TestPlaceProperties checks safety rules over random snapshots: the chosen
// node is ready, uncordoned, runs the type, matches the selector and has
// room; a node is placed whenever one is feasible; the choice has the best
// score; every node is either feasible or rejected once; the decision does
// not depend on the order of the nodes.
func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(20240607))
	const iterations = 2000
	placed := 0
	reasons := map[RejectReason]int{}
	for iter := range iterations {
		nodes := randomCluster(rng, rng.Intn(25))
		req := randomRequest(rng)
		strategy := Strategy(rng.Intn(2))
		d := Place(nodes, req, strategy)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("iteration %d (strategy %v, request %+v): %s", iter, strategy, req, fmt.Sprintf(format, args...))
		}

		wantFeasible := 0
		for _, n := range nodes {
			if feasible(n, req) {
				wantFeasible++
			}
		}
		if d.Feasible != wantFeasible || d.Total != len(nodes) || d.Feasible+len(d.Rejections) != d.Total {
			fail("feasible %d total %d rejections %d, want feasible %d of %d", d.Feasible, d.Total, len(d.Rejections), wantFeasible, len(nodes))
		}
		if d.Placed() != (wantFeasible > 0) || (d.NodeID != "") != d.Placed() {
			fail("placed %v node %q with %d feasible", d.Placed(), d.NodeID, wantFeasible)
		}
		if !slices.IsSortedFunc(d.Rejections, func(a, b Rejection) int { return strings.Compare(a.NodeID, b.NodeID) }) {
			fail("rejections not sorted")
		}
		for _, r := range d.Rejections {
			i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == r.NodeID })
			if i < 0 || feasible(nodes[i], req) {
				fail("rejection %v names a feasible or unknown node", r)
			}
			if r.Reason < NodeNotReady || r.Reason > maxReason {
				fail("rejection %v has no valid reason", r)
			}
			if want := failing(nodes[i], req); r.All != want || !want.Has(r.Reason) {
				fail("rejection %v lists reasons %v, want %v", r, r.All, want)
			}
			// The fast path and the full record agree on the first reason.
			if first := filter(&nodes[i], &req, sortedSelector(req)); first != r.Reason {
				fail("rejection %v: filter says %v", r, first)
			}
			reasons[r.Reason]++
		}
		if d.Placed() {
			placed++
			i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == d.NodeID })
			if i < 0 {
				fail("chose unknown node %q", d.NodeID)
			}
			n := nodes[i]
			if !n.Ready || n.Cordoned {
				fail("chose node %+v that is not ready or cordoned", n)
			}
			if !req.Resources.Fits(n.Capacity.Sub(n.Allocated)) || !feasible(n, req) {
				fail("chose node %+v that cannot take the request", n)
			}
			for _, o := range nodes {
				if !feasible(o, req) {
					continue
				}
				s := score(&o, req.Resources, strategy)
				if s > d.Score || (s == d.Score && o.ID < d.NodeID) {
					fail("node %s (score %v) beats chosen %s (score %v)", o.ID, s, d.NodeID, d.Score)
				}
			}
		}

		shuffled := slices.Clone(nodes)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		d2 := Place(shuffled, req, strategy)
		if d2.NodeID != d.NodeID || d2.Score != d.Score || !slices.Equal(d2.Rejections, d.Rejections) {
			fail("decision depends on node order: %+v vs %+v", d, d2)
		}
	}
	// The generator must exercise both outcomes and every filter.
	if placed < iterations/10 || placed > iterations*9/10 {
		t.Errorf("placed %d of %d random requests; generator is lopsided", placed, iterations)
	}
	for _, r := range []RejectReason{NodeNotReady, NodeCordoned, RuntimeUnsupported, InsufficientCPU,
		InsufficientMemory, InsufficientDisk, SelectorMismatch, PolicyDenied, PortConflict} {
		if reasons[r] == 0 {
			t.Errorf("random snapshots never produced %v", r)
		}
	}
	t.Logf("placed %d of %d; rejections by reason %v", placed, iterations, reasons)
}

// benchCluster builds n nodes sorted by ID, about 10% of them rejected
// for assorted reasons, with a one-label selector.
func benchCluster(n int) ([]Node, Request) {
	rng := rand.New(rand.NewSource(1))
	nodes := make([]Node, n)
	for i := range nodes {
		nd := node(fmt.Sprintf("node-%05d", i), labels("zone", "eu", "rack", fmt.Sprint(i%40)),
			capacity(16000, 64*gi, 500*gi),
			allocated(rng.Int63n(12000), rng.Int63n(48*gi), rng.Int63n(400*gi)))
		switch i % 50 {
		case 1:
			nd.Ready = false
		case 2:
			nd.Cordoned = true
		case 3:
			nd.Runtimes = allRuntimes[2:] // vm only
		case 4:
			nd.Labels = map[string]string{"zone": "us"}
		case 5:
			nd.Allocated.CPUMillis = 15900
		}
		nodes[i] = nd
	}
	return nodes, request(500, gi, 10*gi, "zone", "eu")
}

// BenchmarkPlace reports the cost of one decision by cluster size. The
// plain cases have about 10% of the nodes rejected for assorted reasons;
// "scarce" selects one rack in 40, so that a sampled scan must walk most
// of the cluster to find its feasible nodes (the worst case short of no
// feasible node at all).
func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{100, 1000, 5000, 10000} {
		nodes, req := benchCluster(n)
		scarce := req
		scarce.NodeSelector = map[string]string{"zone": "eu", "rack": "7"}
		for _, c := range []struct {
			name     string
			req      Request
			strategy Strategy
		}{{"spread", req, Spread}, {"binpack", req, BinPack}, {"scarce", scarce, Spread}} {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					d := Place(nodes, c.req, c.strategy)
					if !d.Placed() {
						b.Fatal("not placed")
					}
				}
			})
		}
	}
}

// A malformed snapshot (negative allocation) must still place on a feasible
// node, whatever its score.
func TestPlaceNegativeScore(t *testing.T) {
	nodes := []Node{node("a", allocated(-8000, -16*gi, 0))}
	d := Place(nodes, request(100, mi, 0), BinPack)
	if !d.Placed() || d.NodeID != "a" || d.Score >= 0 {
		t.Fatalf("decision %+v, want node a with a negative score", d)
	}
}
