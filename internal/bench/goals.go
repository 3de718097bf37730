package bench

import (
	"fmt"
	"time"
)

// Goal metrics: the rows a goal can stand beside.
const (
	goalPlacementRate = "placements/s"
	goalAllRunning    = "all RUNNING after"
	goalLatencyP50    = "submit → RUNNING p50"
	goalLatencyP99    = "submit → RUNNING p99"
	goalSchedulerRSS  = "scheduler process RSS"
)

// shape is what a goal is keyed by: the scenario and the sizes of a run.
// Zero Nodes, Workloads or Rate and an empty Scenario match any run.
type shape struct {
	Scenario   string
	Nodes      int
	Workloads  int
	ApplyDelay time.Duration
	Rate       float64
	// EtcdMembers is the external etcd cluster's size (0: the embedded
	// etcd; a goal with 0 holds on either).
	EtcdMembers int
}

// goal is a target from the issues, for one metric at one shape.
type goal struct {
	metric string
	at     shape
	want   string
}

// goals are the project's targets. A goal is shown only beside a run of
// its own scenario and sizes: a 1,000-node run is not measured against a
// 5,000-node target.
var goals = []goal{
	{goalPlacementRate, shape{Scenario: ScenarioThroughput, Nodes: 5000, Workloads: 50000, EtcdMembers: 3}, "≥ 3,750/s"},
	{goalAllRunning, shape{Scenario: ScenarioThroughput, Nodes: 1000, Workloads: 5000}, "< 5 s"},
	{goalAllRunning, shape{Scenario: ScenarioThroughput, Nodes: 1000, Workloads: 5000, ApplyDelay: 900 * time.Millisecond}, "< 2 s"},
	{goalAllRunning, shape{Scenario: ScenarioThroughput, Nodes: 1, Workloads: 5000}, "< 10 s (density)"},
	{goalLatencyP50, shape{Scenario: ScenarioLatency, Workloads: 1}, "< 200 ms idle"},
	{goalLatencyP99, shape{Scenario: ScenarioLatency, Nodes: 1000, Rate: 1000}, "< 1 s"},
	{goalSchedulerRSS, shape{Nodes: 10000, Workloads: 150000}, "≤ 2 GiB"},
}

// matches says whether a run of shape s is one the goal is set for.
func (g goal) matches(s shape) bool {
	at := g.at
	return (at.Scenario == "" || at.Scenario == s.Scenario) &&
		(at.Nodes == 0 || at.Nodes == s.Nodes) &&
		(at.Workloads == 0 || at.Workloads == s.Workloads) &&
		at.ApplyDelay == s.ApplyDelay &&
		(at.Rate == 0 || at.Rate == s.Rate) &&
		(at.EtcdMembers == 0 || at.EtcdMembers == s.EtcdMembers)
}

// String names the goal with the scenario and sizes it belongs to.
func (g goal) String() string {
	at := g.at
	where := ""
	if at.Scenario != "" {
		where = at.Scenario + ", "
	}
	if at.Nodes > 0 {
		where += plural(at.Nodes, "node") + ", "
	}
	if at.Workloads > 0 {
		where += plural(at.Workloads, "workload") + ", "
	}
	if at.Rate > 0 {
		where += fmt.Sprintf("%s/s, ", thousands(int(at.Rate)))
	}
	where += fmt.Sprintf("apply delay %s", at.ApplyDelay)
	if at.EtcdMembers > 0 {
		where += fmt.Sprintf(", %s over TLS", plural(at.EtcdMembers, "etcd member"))
	}
	return fmt.Sprintf("%s (%s)", g.want, where)
}

// goalFor is the goal of metric at shape s, or "" when none is set for
// that scenario and size.
func goalFor(metric string, s shape) string {
	for _, g := range goals {
		if g.metric == metric && g.matches(s) {
			return g.String()
		}
	}
	return ""
}

// shapeOf is the shape of a run with options o.
func shapeOf(scenario string, o *Options) shape {
	return shape{Scenario: scenario, Nodes: o.Cluster.Nodes, Workloads: o.Workloads, ApplyDelay: o.Cluster.ApplyDelay, Rate: o.Rate,
		EtcdMembers: o.Cluster.Etcd.size()}
}

// thousands writes n with comma separators (5000 → 5,000).
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// plural writes n things: 1 node, 5,000 nodes.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return thousands(n) + " " + thing + "s"
}
