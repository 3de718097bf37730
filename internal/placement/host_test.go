package placement

import (
	"slices"
	"testing"

	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/model"
)

func policy(p hostaccess.Policy) func(*Node) { return func(n *Node) { n.Policy = p } }
func taken(ps ...hostaccess.Port) func(*Node) {
	return func(n *Node) { n.Ports = ps }
}

func withHost(r Request, h hostaccess.Needs) Request { r.Host = h; return r }

func TestPlaceHostAccess(t *testing.T) {
	priv := hostaccess.Needs{Privileged: true, PrivilegedField: "spec.container.privileged"}
	data := hostaccess.Needs{HostPaths: []hostaccess.Path{{Path: "/srv/data/x", Field: "spec.container.volumes[0].source"}}}
	port := func(ip string, n uint32, proto, field string) hostaccess.Port {
		return hostaccess.Port{HostIP: ip, Port: n, Protocol: proto, Field: field}
	}
	web := hostaccess.Needs{Ports: []hostaccess.Port{port("127.0.0.1", 8080, "tcp", "spec.container.ports[0].hostPort")}}
	tests := []struct {
		name    string
		nodes   []Node
		req     Request
		want    string
		rejects []string
	}{
		{
			name:    "privileged needs a node that allows it",
			nodes:   []Node{node("a"), node("b", policy(hostaccess.Policy{AllowPrivileged: true}))},
			req:     withHost(request(100, mi, 0), priv),
			want:    "b",
			rejects: []string{"a: POLICY_DENIED: spec.container.privileged: privileged access (privileged mode, devices, added capabilities or host namespaces) is not allowed by the node's policy (agent flag --allow-privileged)"},
		},
		{
			name: "host path must lie under an allowed folder",
			nodes: []Node{
				node("a", policy(hostaccess.Policy{AllowHostPaths: []string{"/srv/database"}})),
				node("b", policy(hostaccess.Policy{AllowHostPaths: []string{"/srv/data"}})),
			},
			req:     withHost(request(100, mi, 0), data),
			want:    "b",
			rejects: []string{`a: POLICY_DENIED: spec.container.volumes[0].source: host path "/srv/data/x" is not allowed by the node's policy (agent flag --allow-host-path)`},
		},
		{
			name:  "a workload without host needs goes anywhere",
			nodes: []Node{node("a")},
			req:   withHost(request(100, mi, 0), hostaccess.Needs{Ports: []hostaccess.Port{port("", 80, "", "p")}}),
			want:  "a",
		},
		{
			name:    "taken port on the same address",
			nodes:   []Node{node("a", taken(port("127.0.0.1", 8080, "tcp", ""))), node("b")},
			req:     withHost(request(100, mi, 0), web),
			want:    "b",
			rejects: []string{"a: PORT_CONFLICT: spec.container.ports[0].hostPort: port 127.0.0.1:8080/tcp is taken"},
		},
		{
			name:    "taken on every address conflicts with one address",
			nodes:   []Node{node("a", taken(port("", 8080, "", ""))), node("b")},
			req:     withHost(request(100, mi, 0), web),
			want:    "b",
			rejects: []string{"a: PORT_CONFLICT: spec.container.ports[0].hostPort: port 127.0.0.1:8080/tcp is taken"},
		},
		{
			name:  "other address, protocol or number is free",
			nodes: []Node{node("a", taken(port("127.0.0.2", 8080, "tcp", ""), port("", 8080, "udp", ""), port("", 8081, "tcp", "")))},
			req:   withHost(request(100, mi, 0), web),
			want:  "a",
		},
		{
			name:  "second requested port is taken",
			nodes: []Node{node("a", taken(port("", 9000, "udp", "")))},
			req: withHost(request(100, mi, 0), hostaccess.Needs{Ports: []hostaccess.Port{
				port("", 8080, "tcp", "spec.vm.networks[0].portForwards[0].hostPort"),
				port("", 9000, "udp", "spec.vm.networks[0].portForwards[1].hostPort")}}),
			rejects: []string{"a: PORT_CONFLICT: spec.vm.networks[0].portForwards[1].hostPort: port *:9000/udp is taken"},
		},
		{
			name:    "policy is checked before ports and resources, and all are listed",
			nodes:   []Node{node("a", taken(port("", 8080, "", "")), allocated(2000, 0, 0))},
			req:     withHost(request(100, mi, 0), hostaccess.Needs{Privileged: true, PrivilegedField: "f", Ports: web.Ports}),
			rejects: []string{"a: POLICY_DENIED: f: privileged access (privileged mode, devices, added capabilities or host namespaces) is not allowed by the node's policy (agent flag --allow-privileged); also INSUFFICIENT_CPU, PORT_CONFLICT"},
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
		})
	}
}

// TestRejectionAllReasons: a rejection lists every filter the node fails,
// not only the first, in the record (All, Also) and in its text.
func TestRejectionAllReasons(t *testing.T) {
	vm := Request{Workload: "big", Type: model.WorkloadVM,
		Resources: model.Resources{CPUMillis: 4000, MemoryBytes: 1 << 40}}
	tests := []struct {
		name   string
		node   Node
		req    Request
		reason RejectReason
		also   []RejectReason
		detail string
	}{
		{
			name:   "a 1Ti VM on a node also short of cpu",
			node:   node("a", capacity(2000, 64*gi, 0)),
			req:    vm,
			reason: InsufficientCPU,
			also:   []RejectReason{InsufficientMemory},
			detail: "cpu: requested 4000m, free 2000m of 2000m; also INSUFFICIENT_MEMORY",
		},
		{
			name:   "only memory",
			node:   node("a", capacity(8000, 64*gi, 0)),
			req:    vm,
			reason: InsufficientMemory,
			detail: "memory: requested 1Ti, free 64Gi of 64Gi",
		},
		{
			name: "every kind at once",
			node: node("a", notReady, cordoned, runtimes(model.WorkloadContainer), labels("zone", "us"), capacity(0, 0, 0), taken(hostaccess.Port{Port: 22})),
			req: func() Request {
				r := vm
				r.RequireKVM = true
				r.NodeSelector = map[string]string{"zone": "eu"}
				r.Pools = []PoolDemand{{Name: "fast", Bytes: gi}}
				r.Resources.DiskBytes = gi
				r.Host = hostaccess.Needs{Privileged: true, PrivilegedField: "p", Ports: []hostaccess.Port{{Port: 22, Field: "q"}}}
				return r
			}(),
			reason: NodeNotReady,
			also: []RejectReason{NodeCordoned, RuntimeUnsupported, InsufficientCPU, InsufficientMemory, InsufficientDisk,
				SelectorMismatch, CapabilityMissing, PoolMissing, PolicyDenied, PortConflict},
			detail: "node is not ready; also NODE_CORDONED, RUNTIME_UNSUPPORTED, INSUFFICIENT_CPU, INSUFFICIENT_MEMORY, INSUFFICIENT_DISK, SELECTOR_MISMATCH, CAPABILITY_MISSING, POOL_MISSING, POLICY_DENIED, PORT_CONFLICT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Place([]Node{tt.node}, tt.req, Spread)
			if d.Placed() || len(d.Rejections) != 1 {
				t.Fatalf("decision %+v, want one rejection", d)
			}
			r := d.Rejections[0]
			if r.Reason != tt.reason || !slices.Equal(r.Also(nil), tt.also) {
				t.Fatalf("reason %v also %v, want %v also %v", r.Reason, r.Also(nil), tt.reason, tt.also)
			}
			if !r.All.Has(r.Reason) {
				t.Fatalf("All %v lacks the first reason %v", r.All, r.Reason)
			}
			if r.Detail() != tt.detail {
				t.Fatalf("Detail = %q, want %q", r.Detail(), tt.detail)
			}
		})
	}
}
