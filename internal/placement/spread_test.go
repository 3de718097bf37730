package placement

import (
	"testing"
)

func TestPlaceSpread(t *testing.T) {
	zoned := []Node{
		node("a1", labels("zone", "a")), node("a2", labels("zone", "a")),
		node("b1", labels("zone", "b"), allocated(1500, 3*gi, 0)), node("c1"),
	}
	for _, tc := range []struct {
		name   string
		spread *GroupSpread
		want   string
		reject map[string]RejectReason
	}{
		{name: "no spread takes the least allocated", want: "a1"},
		{name: "max per node rules out full nodes", spread: &GroupSpread{MaxPerNode: 1, PerNode: map[string]int{"a1": 1, "a2": 1}},
			want: "c1", reject: map[string]RejectReason{"a1": SpreadLimit, "a2": SpreadLimit}},
		{name: "every node full places nothing", spread: &GroupSpread{MaxPerNode: 2, PerNode: map[string]int{"a1": 2, "a2": 2, "b1": 3, "c1": 2}},
			want: "", reject: map[string]RejectReason{"a1": SpreadLimit, "a2": SpreadLimit, "b1": SpreadLimit, "c1": SpreadLimit}},
		{name: "the least used zone wins over free capacity", spread: &GroupSpread{Label: "zone", PerValue: map[string]int{"a": 2, "": 1}},
			want: "b1"},
		{name: "within a zone the strategy decides", spread: &GroupSpread{Label: "zone", PerValue: map[string]int{"b": 1, "": 1}},
			want: "a1"},
		{name: "both together", spread: &GroupSpread{MaxPerNode: 1, PerNode: map[string]int{"b1": 1}, Label: "zone",
			PerValue: map[string]int{"a": 1, "b": 1}}, want: "c1", reject: map[string]RejectReason{"b1": SpreadLimit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(100, 64*mi, 0)
			req.Spread = tc.spread
			d := Place(zoned, req, Spread)
			if d.NodeID != tc.want {
				t.Fatalf("placed on %q, want %q (rejections %v)", d.NodeID, tc.want, d.Rejections)
			}
			if len(d.Rejections) != len(tc.reject) {
				t.Fatalf("rejections %v, want %v", d.Rejections, tc.reject)
			}
			for _, r := range d.Rejections {
				if tc.reject[r.NodeID] != r.Reason {
					t.Errorf("%s rejected for %v, want %v", r.NodeID, r.Reason, tc.reject[r.NodeID])
				}
				if r.Reason == SpreadLimit && r.Detail() == "" {
					t.Errorf("%s: no detail", r.NodeID)
				}
			}
		})
	}
}

func BenchmarkPlaceSpread(b *testing.B) {
	nodes := make([]Node, 1000)
	per := map[string]int{}
	for i := range nodes {
		nodes[i] = node(string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('0'+i/676)), labels("zone", string(rune('a'+i%3))))
		per[nodes[i].ID] = i % 2
	}
	req := request(100, 64*mi, 0)
	req.Spread = &GroupSpread{MaxPerNode: 1, PerNode: per, Label: "zone", PerValue: map[string]int{"a": 3, "b": 1}}
	b.ReportAllocs()
	for b.Loop() {
		Place(nodes, req, Spread)
	}
}
