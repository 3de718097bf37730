package placement

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/model"
)

// equalNodes returns n identical empty nodes sorted by ID.
func equalNodes(n int, opts ...func(*Node)) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("node-%05d", i), opts...)
	}
	return nodes
}

// wrapped returns the indexes a scan of count nodes from start visits.
func wrapped(start, count, n int) []int {
	out := make([]int, count)
	for k := range out {
		out[k] = (start + k) % n
	}
	return out
}

// TestSampledProperties checks sampled scans over random large clusters:
// the choice always passes every filter, the scan stops exactly at
// SampleSize feasible nodes and picks the best (first on ties) of those,
// a scan that found fewer covers every node, and a decision that places
// nothing lists every node's rejection.
func TestSampledProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	sampled, placed, unplaced := 0, 0, 0
	for iter := range 60 {
		n := FullScanNodes + 1 + rng.Intn(2000)
		nodes := randomCluster(rng, n)
		// randomCluster's IDs repeat beyond 1,000 nodes; keep them
		// unique and out of order.
		for i, p := range rng.Perm(n) {
			nodes[i].ID = fmt.Sprintf("node-%05d", p)
		}
		req := randomRequest(rng)
		strategy := Strategy(rng.Intn(2))
		start := rng.Intn(3*n) - n // the cursor is taken modulo n, negative too
		s := Sampler{Next: start}
		d := s.Place(nodes, req, strategy)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("iteration %d (n %d, start %d, strategy %v, request %+v): %s", iter, n, start, strategy, req, fmt.Sprintf(format, args...))
		}
		from := ((start % n) + n) % n

		var feasibleIdx []int
		for _, i := range wrapped(from, n, n) {
			if feasible(nodes[i], req) {
				feasibleIdx = append(feasibleIdx, i)
			}
		}
		if d.Total != n || d.Sampled != (d.Scanned < n) || d.Scanned < 1 || d.Scanned > n {
			fail("total %d scanned %d sampled %v", d.Total, d.Scanned, d.Sampled)
		}
		switch {
		case len(feasibleIdx) == 0:
			unplaced++
			if d.Placed() || d.NodeID != "" || d.Scanned != n || s.Next != start {
				fail("placed %q, scanned %d, cursor %d with no feasible node", d.NodeID, d.Scanned, s.Next)
			}
			if len(d.Rejections) != n {
				fail("%d rejections for %d nodes", len(d.Rejections), n)
			}
			// Each node's rejection as a one-node full scan states it.
			want := make([]Rejection, n)
			for i := range nodes {
				want[i] = Place(nodes[i:i+1], req, strategy).Rejections[0]
			}
			slices.SortFunc(want, func(a, b Rejection) int { return strings.Compare(a.NodeID, b.NodeID) })
			if !slices.Equal(d.Rejections, want) {
				fail("rejections differ from every node's own, sorted by ID")
			}
			continue
		case len(feasibleIdx) < SampleSize:
			if d.Sampled || d.Feasible != len(feasibleIdx) {
				fail("sampled %v feasible %d, want a full scan finding %d", d.Sampled, d.Feasible, len(feasibleIdx))
			}
		default:
			if d.Feasible != SampleSize {
				fail("feasible %d, want SampleSize", d.Feasible)
			}
			// The scan stopped at the SampleSize-th feasible node.
			last := feasibleIdx[SampleSize-1]
			if want := (last-from+n)%n + 1; d.Scanned != want {
				fail("scanned %d, want %d", d.Scanned, want)
			}
			feasibleIdx = feasibleIdx[:SampleSize]
		}
		placed++
		if d.Sampled {
			sampled++
		}
		if d.Rejections != nil {
			fail("a placed large-cluster decision lists %d rejections", len(d.Rejections))
		}
		i := slices.IndexFunc(nodes, func(nd Node) bool { return nd.ID == d.NodeID })
		if i < 0 || !feasible(nodes[i], req) {
			fail("chose %q, which is unknown or infeasible", d.NodeID)
		}
		// The best among the scanned feasible nodes, the first on ties.
		want := feasibleIdx[0]
		for _, j := range feasibleIdx[1:] {
			if score(&nodes[j], req.Resources, strategy) > score(&nodes[want], req.Resources, strategy) {
				want = j
			}
		}
		if i != want || d.Score != score(&nodes[want], req.Resources, strategy) {
			fail("chose %s (score %v), want %s", d.NodeID, d.Score, nodes[want].ID)
		}
		wantNext := i
		if strategy == Spread {
			wantNext = (i + 1) % n
		}
		if s.Next != wantNext {
			fail("cursor %d, want %d", s.Next, wantNext)
		}
		// Place is the same scan from a start of its own.
		pd := Place(nodes, req, strategy)
		if pd.NodeID == "" || !feasible(nodes[slices.IndexFunc(nodes, func(nd Node) bool { return nd.ID == pd.NodeID })], req) {
			fail("Place chose %q", pd.NodeID)
		}
	}
	if sampled == 0 || placed == sampled || unplaced == 0 {
		t.Errorf("generator is lopsided: %d sampled, %d placed, %d unplaced", sampled, placed, unplaced)
	}
}

// TestSampledFindsTheOnlyFeasibleNode: with one feasible node among 10,000
// the scan wraps around from any start until it finds it.
func TestSampledFindsTheOnlyFeasibleNode(t *testing.T) {
	const n = 10000
	nodes := equalNodes(n, labels("zone", "us"))
	for _, at := range []int{0, 1, 4999, n - 1} {
		nodes := slices.Clone(nodes)
		nodes[at].Labels = map[string]string{"zone": "eu"}
		req := request(500, gi, 0, "zone", "eu")
		starts := []int{0, at, at + 1, n - 1, n + 3}
		slices.Sort(starts)
		for _, start := range slices.Compact(starts) {
			t.Run(fmt.Sprintf("at=%d/start=%d", at, start), func(t *testing.T) {
				s := Sampler{Next: start}
				d := s.Place(nodes, req, Spread)
				if d.NodeID != nodes[at].ID || d.Feasible != 1 || d.Scanned != n || d.Sampled || d.Rejections != nil {
					t.Fatalf("decision %s feasible %d scanned %d sampled %v rejections %d; want %s found by a full scan",
						d.NodeID, d.Feasible, d.Scanned, d.Sampled, len(d.Rejections), nodes[at].ID)
				}
				if s.Next != (at+1)%n {
					t.Fatalf("cursor %d, want %d", s.Next, (at+1)%n)
				}
			})
		}
		if d := Place(nodes, request(500, gi, 0, "zone", "eu"), BinPack); d.NodeID != nodes[at].ID {
			t.Fatalf("Place chose %q, want %s", d.NodeID, nodes[at].ID)
		}
	}
}

// TestSampledNoFeasibleNode: with no feasible node among 10,000, every node
// is rejected with its own reason, in ID order, as by a full scan.
func TestSampledNoFeasibleNode(t *testing.T) {
	const n = 10000
	nodes := equalNodes(n, labels("zone", "eu"))
	want := make([]Rejection, n)
	for i := range nodes {
		nd := &nodes[i]
		switch i % 5 {
		case 0:
			nd.Ready = false
			want[i] = Rejection{Reason: NodeNotReady}
		case 1:
			nd.Cordoned = true
			want[i] = Rejection{Reason: NodeCordoned}
		case 2:
			nd.Runtimes = []model.WorkloadType{model.WorkloadVM}
			want[i] = Rejection{Reason: RuntimeUnsupported, Requested: int64(model.WorkloadContainer)}
		case 3:
			nd.Labels = map[string]string{"zone": "us"}
			want[i] = Rejection{Reason: SelectorMismatch, Key: "zone", Want: "eu", Have: "us", HasLabel: true}
		case 4:
			nd.Allocated.CPUMillis = 1900
			want[i] = Rejection{Reason: InsufficientCPU, Requested: 500, Free: 100, Capacity: 2000}
		}
		want[i].NodeID = nd.ID
		want[i].All = only(want[i].Reason)
	}
	req := request(500, gi, 0, "zone", "eu")
	s := Sampler{Next: 1234}
	for _, d := range []Decision{s.Place(nodes, req, Spread), Place(nodes, req, BinPack)} {
		if d.Placed() || d.NodeID != "" || d.Feasible != 0 || d.Total != n || d.Scanned != n || d.Sampled {
			t.Fatalf("decision %q feasible %d total %d scanned %d sampled %v", d.NodeID, d.Feasible, d.Total, d.Scanned, d.Sampled)
		}
		if !slices.Equal(d.Rejections, want) {
			t.Fatalf("rejections differ from every node's reason (%d of %d)", len(d.Rejections), n)
		}
	}
	if s.Next != 1234 {
		t.Fatalf("cursor moved to %d without a placement", s.Next)
	}
	// Unsorted input comes back sorted by ID, as from a full scan.
	shuffled := slices.Clone(nodes)
	rand.New(rand.NewSource(1)).Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if d := Place(shuffled, req, Spread); !slices.Equal(d.Rejections, want) {
		t.Fatal("rejections of shuffled nodes are not sorted by ID")
	}
}

// placeAll places count equal workloads through s, adding each to its node
// as the scheduler's snapshot does, and returns how many landed per node.
func placeAll(t *testing.T, s *Sampler, nodes []Node, count int, strategy Strategy) map[string]int {
	t.Helper()
	index := make(map[string]int, len(nodes))
	for i, nd := range nodes {
		index[nd.ID] = i
	}
	per := map[string]int{}
	for w := range count {
		req := request(10, 10*mi, 0)
		req.Workload = fmt.Sprintf("w-%d", w)
		var d Decision
		if s != nil {
			d = s.Place(nodes, req, strategy)
		} else {
			d = Place(nodes, req, strategy)
		}
		if !d.Placed() {
			t.Fatalf("workload %d not placed", w)
		}
		nd := &nodes[index[d.NodeID]]
		if !feasible(*nd, req) {
			t.Fatalf("workload %d placed on infeasible node %s", w, nd.ID)
		}
		nd.Allocated = nd.Allocated.Add(req.Resources)
		per[d.NodeID]++
	}
	return per
}

func spreadRange(per map[string]int, nodes []Node) (lo, hi int) {
	lo = -1
	for _, nd := range nodes {
		if !nd.Ready {
			continue
		}
		c := per[nd.ID]
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return lo, hi
}

// TestSamplerSpreadsEvenly: a Sampler over equal nodes takes them in turn,
// so 5 placements per node give exactly 5 on each, infeasible nodes
// skipped; a full scan (1,000 nodes) does too.
func TestSamplerSpreadsEvenly(t *testing.T) {
	for _, n := range []int{1000, FullScanNodes + 1, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nodes := equalNodes(n)
			for i := 7; i < n; i += 50 {
				nodes[i].Ready = false
			}
			s := Sampler{Next: 123}
			ready := n - len(slices.DeleteFunc(slices.Clone(nodes), func(nd Node) bool { return nd.Ready }))
			per := placeAll(t, &s, nodes, 5*ready, Spread)
			if lo, hi := spreadRange(per, nodes); lo != 5 || hi != 5 {
				t.Fatalf("%d to %d workloads per ready node, want 5 on each", lo, hi)
			}
		})
	}
}

// TestPlaceSpreadsNearlyEvenly: Place alone starts each workload's scan at
// a hash of its name, so over equal nodes it spreads evenly only on
// average: 5 placements per node over 5,000 nodes stay within 4 to 6.
func TestPlaceSpreadsNearlyEvenly(t *testing.T) {
	nodes := equalNodes(5000)
	per := placeAll(t, nil, nodes, 5*len(nodes), Spread)
	lo, hi := spreadRange(per, nodes)
	if lo < 4 || hi > 6 {
		t.Fatalf("%d to %d workloads per node, want 4 to 6", lo, hi)
	}
	t.Logf("%d to %d workloads per node", lo, hi)
}

// TestSamplerBinPackFillsNodesInTurn: BinPack's scan starts at the node it
// chose last, so it fills one node before it opens the next.
func TestSamplerBinPackFillsNodesInTurn(t *testing.T) {
	nodes := equalNodes(2000, capacity(40, 4*gi, 0)) // room for 4 requests of 10m
	s := Sampler{Next: 1990}
	per := placeAll(t, &s, nodes, 40, BinPack)
	if len(per) != 10 {
		t.Fatalf("40 workloads on %d nodes, want 10 full ones: %v", len(per), per)
	}
	for id, c := range per {
		if c != 4 {
			t.Fatalf("node %s holds %d, want 4: %v", id, c, per)
		}
	}
}

// TestSmallClustersIgnoreTheCursor: up to FullScanNodes a Sampler scans
// every node and decides as Place always did, whatever its cursor.
func TestSmallClustersIgnoreTheCursor(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, n := range []int{0, 1, 30, FullScanNodes} {
		nodes := randomCluster(rng, n)
		for i, p := range rng.Perm(n) {
			nodes[i].ID = fmt.Sprintf("node-%05d", p)
		}
		for range 20 {
			req := randomRequest(rng)
			strategy := Strategy(rng.Intn(2))
			d := Place(nodes, req, strategy)
			start := rng.Intn(5000)
			s := Sampler{Next: start}
			sd := s.Place(nodes, req, strategy)
			if d.Scanned != n || d.Sampled || d.Feasible+len(d.Rejections) != n {
				t.Fatalf("n %d: scanned %d sampled %v feasible %d rejections %d", n, d.Scanned, d.Sampled, d.Feasible, len(d.Rejections))
			}
			if sd.NodeID != d.NodeID || sd.Score != d.Score || sd.Feasible != d.Feasible || sd.Scanned != d.Scanned ||
				!slices.Equal(sd.Rejections, d.Rejections) || s.Next != start {
				t.Fatalf("n %d: sampler decided %+v, Place %+v", n, sd, d)
			}
			// Ties still go to the smallest ID, not to scan order.
			if d.Placed() {
				for _, nd := range nodes {
					if feasible(nd, req) && score(&nd, req.Resources, strategy) == d.Score && strings.Compare(nd.ID, d.NodeID) < 0 {
						t.Fatalf("n %d: tie went to %s, not %s", n, d.NodeID, nd.ID)
					}
				}
			}
		}
	}
}

// BenchmarkSampler places through a Sampler and adds each placement to its
// node, as the scheduler's snapshot does, so that the cursor and the
// scores move as in a run of placements.
func BenchmarkSampler(b *testing.B) {
	for _, n := range []int{1000, 5000, 10000} {
		for _, strategy := range []Strategy{Spread, BinPack} {
			b.Run(fmt.Sprintf("nodes=%d/%v", n, strategy), func(b *testing.B) {
				nodes, _ := benchCluster(n)
				index := make(map[string]int, n)
				for i, nd := range nodes {
					index[nd.ID] = i
				}
				req := request(10, 10*mi, 0, "zone", "eu")
				var s Sampler
				b.ReportAllocs()
				for b.Loop() {
					d := s.Place(nodes, req, strategy)
					if !d.Placed() {
						b.Fatal("not placed")
					}
					nd := &nodes[index[d.NodeID]]
					nd.Allocated = nd.Allocated.Add(req.Resources)
				}
			})
		}
	}
}
