package placement

import (
	"testing"

	"github.com/persys-dev/compute/internal/model"
)

func vmNode(id, accel string, pools ...Pool) Node {
	return Node{ID: id, Ready: true, Runtimes: []model.WorkloadType{model.WorkloadVM},
		Capacity: model.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30, DiskBytes: 100 << 30},
		Accel:    accel, Pools: pools}
}

func TestPlaceVMCapabilitiesAndPools(t *testing.T) {
	vmReq := func(kvm bool, pools ...PoolDemand) Request {
		return Request{Workload: "vm", Type: model.WorkloadVM,
			Resources: model.Resources{CPUMillis: 1000, MemoryBytes: 512 << 20}, RequireKVM: kvm, Pools: pools}
	}
	tests := []struct {
		name    string
		nodes   []Node
		req     Request
		want    string
		rejects []string
	}{
		{
			name:    "kvm required",
			nodes:   []Node{vmNode("a", "tcg"), vmNode("b", "kvm")},
			req:     vmReq(true),
			want:    "b",
			rejects: []string{"a: CAPABILITY_MISSING: the workload requires KVM; the node runs VMs with tcg"},
		},
		{
			name:    "no kvm anywhere",
			nodes:   []Node{vmNode("a", "")},
			req:     vmReq(true),
			rejects: []string{"a: CAPABILITY_MISSING: the workload requires KVM; the node runs VMs with none"},
		},
		{
			name:    "pool missing",
			nodes:   []Node{vmNode("a", "tcg", Pool{Name: "slow", Capacity: 10 << 30}), vmNode("b", "tcg", Pool{Name: "fast", Capacity: 10 << 30})},
			req:     vmReq(false, PoolDemand{Name: "fast", Bytes: 1 << 30}),
			want:    "b",
			rejects: []string{"a: POOL_MISSING: node has no storage pool fast"},
		},
		{
			name:    "pool full",
			nodes:   []Node{vmNode("a", "tcg", Pool{Name: "fast", Capacity: 10 << 30, Allocated: 9 << 30}), vmNode("b", "tcg", Pool{Name: "fast", Capacity: 10 << 30})},
			req:     vmReq(false, PoolDemand{Name: "fast", Bytes: 2 << 30}),
			want:    "b",
			rejects: []string{"a: INSUFFICIENT_DISK: pool fast: requested 2Gi, free 1Gi of 10Gi"},
		},
		{
			name:    "pool file system fuller than its capacity says",
			nodes:   []Node{vmNode("a", "tcg", Pool{Name: "fast", Capacity: 10 << 30, Free: 1 << 30}), vmNode("b", "tcg", Pool{Name: "fast", Capacity: 10 << 30})},
			req:     vmReq(false, PoolDemand{Name: "fast", Bytes: 2 << 30}),
			want:    "b",
			rejects: []string{"a: INSUFFICIENT_DISK: pool fast: requested 2Gi, free 1Gi of 10Gi"},
		},
		{
			name:  "zero-byte demand only needs the pool",
			nodes: []Node{vmNode("a", "tcg", Pool{Name: "images", Capacity: 0})},
			req:   vmReq(false, PoolDemand{Name: "images"}),
			want:  "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Place(tt.nodes, tt.req, Spread)
			if d.NodeID != tt.want {
				t.Fatalf("placed on %q, want %q (%v)", d.NodeID, tt.want, d.Rejections)
			}
			if len(d.Rejections) != len(tt.rejects) {
				t.Fatalf("rejections = %v, want %v", d.Rejections, tt.rejects)
			}
			for i, r := range d.Rejections {
				if r.String() != tt.rejects[i] {
					t.Errorf("rejection %d = %q, want %q", i, r.String(), tt.rejects[i])
				}
			}
		})
	}
}
