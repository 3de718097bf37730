package placement

import (
	"slices"
	"testing"

	"github.com/persys-dev/compute/internal/hostaccess"
)

func dynRange(first, last uint32) func(*Node) {
	return func(n *Node) { n.DynamicFirst, n.DynamicLast = first, last }
}

func withDynamic(r Request, fields ...string) Request {
	for _, f := range fields {
		r.Dynamic = append(r.Dynamic, hostaccess.Port{Protocol: "tcp", Field: f})
	}
	return r
}

// TestPlaceDynamicPorts: a node takes dynamic ports only while its range
// has as many free numbers as asked, whatever takes the others.
func TestPlaceDynamicPorts(t *testing.T) {
	p0, p1 := "spec.container.ports[0].hostPort", "spec.container.ports[1].hostPort"
	tcp := func(n uint32) hostaccess.Port { return hostaccess.Port{Port: n, Protocol: "tcp"} }
	tests := []struct {
		name    string
		nodes   []Node
		req     Request
		want    string
		picked  []uint32
		rejects []string
	}{
		{
			name:    "a node without a range takes none",
			nodes:   []Node{node("a"), node("b", dynRange(20000, 20009))},
			req:     withDynamic(request(100, mi, 0), p0),
			want:    "b",
			picked:  []uint32{20000},
			rejects: []string{"a: PORT_CONFLICT: " + p0 + ": the node offers no dynamic ports (agent flag --dynamic-ports)"},
		},
		{
			name:   "the lowest free numbers, skipping taken ones",
			nodes:  []Node{node("a", dynRange(20000, 20009), taken(tcp(20000), tcp(20002)))},
			req:    withDynamic(request(100, mi, 0), p0, p1),
			want:   "a",
			picked: []uint32{20001, 20003},
		},
		{
			name:  "a number taken twice (tcp and udp) is counted once",
			nodes: []Node{node("a", dynRange(20000, 20002), taken(tcp(20000), hostaccess.Port{Port: 20000, Protocol: "udp"}, tcp(19999)))},
			req:   withDynamic(request(100, mi, 0), p0, p1),
			want:  "a", picked: []uint32{20001, 20002},
		},
		{
			name:    "exhausted range",
			nodes:   []Node{node("a", dynRange(20000, 20001), taken(tcp(20001))), node("b", dynRange(20000, 20001), taken(tcp(20000), tcp(20001)))},
			req:     withDynamic(request(100, mi, 0), p0, p1),
			rejects: []string{"a: PORT_CONFLICT: " + p0 + ": dynamic ports: requested 2, free 1 of 2 in the node's range", "b: PORT_CONFLICT: " + p0 + ": dynamic ports: requested 2, free 0 of 2 in the node's range"},
		},
		{
			name:  "a static port of the same request is not given out again",
			nodes: []Node{node("a", dynRange(20000, 20001))},
			req: func() Request {
				r := withDynamic(request(100, mi, 0), p1)
				r.Host.Ports = []hostaccess.Port{{Port: 20000, Field: p0}}
				return r
			}(),
			want: "a", picked: []uint32{20001},
		},
		{
			name:  "a static conflict is reported before the range",
			nodes: []Node{node("a", dynRange(20000, 20000), taken(tcp(20000)))},
			req: func() Request {
				r := withDynamic(request(100, mi, 0), p1)
				r.Host.Ports = []hostaccess.Port{{Port: 20000, Field: p0}}
				return r
			}(),
			rejects: []string{"a: PORT_CONFLICT: " + p0 + ": port *:20000/tcp is taken"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Place(tt.nodes, tt.req, Spread)
			if d.NodeID != tt.want {
				t.Fatalf("placed on %q, want %q (%v)", d.NodeID, tt.want, d.Rejections)
			}
			var got []string
			for _, r := range d.Rejections {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tt.rejects) {
				t.Fatalf("rejections\n got %q\nwant %q", got, tt.rejects)
			}
			if !d.Placed() {
				return
			}
			i := slices.IndexFunc(tt.nodes, func(n Node) bool { return n.ID == d.NodeID })
			picked, ok := PickDynamic(&tt.nodes[i], &tt.req, nil)
			if !ok || !slices.Equal(picked, tt.picked) {
				t.Fatalf("PickDynamic = %v, %v; want %v", picked, ok, tt.picked)
			}
		})
	}
}

// TestPickDynamicAgreesWithDynamicFree: over every layout of a small range,
// PickDynamic succeeds exactly when DynamicFree says there is room, and
// picks distinct free numbers inside the range.
func TestPickDynamicAgreesWithDynamicFree(t *testing.T) {
	const first, last = 100, 104
	for mask := 0; mask < 1<<7; mask++ {
		n := node("a", dynRange(first, last))
		for b := 0; b < 7; b++ {
			if mask&(1<<b) != 0 {
				n.Ports = append(n.Ports, hostaccess.Port{Port: uint32(first - 1 + b), Protocol: "tcp"})
			}
		}
		for need := 1; need <= 6; need++ {
			req := request(1, 1, 0)
			for k := 0; k < need; k++ {
				req.Dynamic = append(req.Dynamic, hostaccess.Port{})
			}
			picked, ok := PickDynamic(&n, &req, nil)
			if ok != (DynamicFree(&n, &req) >= need) {
				t.Fatalf("mask %b need %d: PickDynamic ok=%v, DynamicFree=%d", mask, need, ok, DynamicFree(&n, &req))
			}
			if !ok {
				continue
			}
			for k, p := range picked {
				if p < first || p > last || dynamicTaken(&n, &req, p) || slices.Contains(picked[:k], p) {
					t.Fatalf("mask %b need %d: picked %v", mask, need, picked)
				}
			}
		}
	}
}

// TestDynamicPortsAllocateNothing: counting a range's free ports adds no
// allocation to a placement that places.
func TestDynamicPortsAllocateNothing(t *testing.T) {
	nodes := []Node{
		node("a", dynRange(20000, 32000), taken(hostaccess.Port{Port: 20000}, hostaccess.Port{Port: 20001, Protocol: "udp"})),
		node("b", dynRange(20000, 32000)),
	}
	req := withDynamic(request(100, mi, 0), "p0", "p1")
	req.Host.Ports = []hostaccess.Port{{Port: 20002}}
	dst := make([]uint32, 0, 2)
	if n := testing.AllocsPerRun(100, func() {
		if !Place(nodes, req, Spread).Placed() {
			t.Fatal("not placed")
		}
		if _, ok := PickDynamic(&nodes[0], &req, dst[:0]); !ok {
			t.Fatal("nothing picked")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per placement, want 0", n)
	}
}
