package bench

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
)

// DefaultStallAfter is how long a wait for convergence sees no change
// before it asks the scheduler why workloads are pending.
const DefaultStallAfter = 5 * time.Second

// Unfinished says why a run did not converge: how far it got and, for
// the workloads still pending, why the scheduler placed them nowhere.
type Unfinished struct {
	Total   int `json:"total"`
	Placed  int `json:"placed"`
	Running int `json:"running"`
	Pending int `json:"pending"`
	// Stalled: the run stopped early because nothing changed for
	// StallAfter and every workload not RUNNING was pending with no
	// feasible node; false: it ran into its timeout.
	Stalled bool `json:"stalled"`
	// Why groups the pending workloads by the reason of their latest
	// placement decision, largest group first.
	Why         []PendingGroup `json:"why,omitempty"`
	AfterSecond float64        `json:"after_s"`
}

// PendingGroup is a count of pending workloads that share one reason.
type PendingGroup struct {
	Count  int    `json:"count"`
	Reason string `json:"reason"`
}

func (u *Unfinished) String() string {
	how := fmt.Sprintf("timed out after %.1fs", u.AfterSecond)
	if u.Stalled {
		how = fmt.Sprintf("stopped after %.1fs: no change and nothing left that can be placed", u.AfterSecond)
	}
	s := fmt.Sprintf("unfinished: %s of %s placed, %s RUNNING; %s", thousands(u.Placed), thousands(u.Total), thousands(u.Running), how)
	if u.Pending > 0 {
		parts := make([]string, 0, len(u.Why))
		for _, g := range u.Why {
			if len(u.Why) == 1 {
				parts = append(parts, g.Reason)
				break
			}
			parts = append(parts, fmt.Sprintf("%s %s", thousands(g.Count), g.Reason))
		}
		s += fmt.Sprintf("; %s pending: %s", thousands(u.Pending), strings.Join(parts, "; "))
	}
	return s
}

// decisionReason describes a pending workload's decision as counts by
// the reason each node was ruled out for.
func decisionReason(d *persysv1.PlacementDecision) string {
	switch {
	case d == nil:
		return "no placement decision yet"
	case d.GetTotalNodes() == 0:
		return "no nodes registered"
	case d.GetFeasibleNodes() > 0:
		return fmt.Sprintf("%d of %d nodes feasible", d.GetFeasibleNodes(), d.GetTotalNodes())
	}
	counts := map[string]int{}
	for _, r := range d.GetRejections() {
		counts[strings.ToLower(placement.RejectReason(r.GetReason()).String())]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, counts[k])
	}
	what := "every node ruled out"
	if int(d.GetTotalNodes()) > len(d.GetRejections()) {
		what = fmt.Sprintf("every node ruled out (%d of %d scanned)", len(d.GetRejections()), d.GetTotalNodes())
	}
	return fmt.Sprintf("%s (%s)", what, strings.Join(parts, ", "))
}

// pendingWhy lists the workloads and groups those PENDING by the reason
// of their decision. stuck says that every workload not RUNNING is
// pending with no feasible node, so nothing more will happen by itself.
func pendingWhy(ctx context.Context, c *Cluster) (pending int, why []PendingGroup, stuck bool, err error) {
	resp, err := c.Control(0).ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{}, bigList)
	if err != nil {
		return 0, nil, false, fmt.Errorf("bench: list workloads: %w", err)
	}
	counts := map[string]int{}
	stuck = true
	for _, v := range resp.GetWorkloads() {
		switch v.GetStatus().GetState() {
		case persysv1.ActualState_ACTUAL_STATE_RUNNING:
			continue
		case persysv1.ActualState_ACTUAL_STATE_PENDING:
		default:
			stuck = false
			continue
		}
		pending++
		d := v.GetAssignment().GetDecision()
		if d == nil || (d.GetTotalNodes() > 0 && d.GetFeasibleNodes() > 0) {
			stuck = false
		}
		counts[decisionReason(d)]++
	}
	for r, n := range counts {
		why = append(why, PendingGroup{Count: n, Reason: r})
	}
	slices.SortFunc(why, func(a, b PendingGroup) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return pending, why, stuck && pending > 0, nil
}

// stallWatch notices a wait that no longer progresses: it is fed the
// figures that move while a run converges and says when they stood still
// for its period. Its callers list the workloads (to ask why) only when
// the PENDING gauge is above zero, as that list is large.
type stallWatch struct {
	after time.Duration
	last  [3]int
	since time.Time
}

func newStallWatch(after time.Duration, now time.Time) *stallWatch {
	return &stallWatch{after: after, last: [3]int{-1, -1, -1}, since: now}
}

// stalled records the figures seen at now and says whether they have not
// changed for the period.
func (s *stallWatch) stalled(now time.Time, placed, running, pending int) bool {
	cur := [3]int{placed, running, pending}
	if cur != s.last {
		s.last, s.since = cur, now
		return false
	}
	return now.Sub(s.since) >= s.after
}

// restart starts the period again (after a look that found work still
// under way).
func (s *stallWatch) restart(now time.Time) { s.since = now }

// progressOf reads, in one gather, the placements committed and the
// workloads RUNNING and PENDING.
func progressOf(c *Cluster) (placed, running, pending int, err error) {
	var mfs []*dto.MetricFamily
	if g, ok := c.Registry.(progressGatherer); ok {
		mfs, err = g.GatherProgress()
	} else {
		mfs, err = c.Registry.Gather()
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: gather metrics: %w", err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricPlacements:
			for _, m := range mf.GetMetric() {
				placed += int(m.GetCounter().GetValue())
			}
		case metricWorkloads:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() != "state" {
						continue
					}
					switch l.GetValue() {
					case "RUNNING":
						running += int(m.GetGauge().GetValue())
					case "PENDING":
						pending += int(m.GetGauge().GetValue())
					}
				}
			}
		}
	}
	return placed, running, pending, nil
}

// progressGatherer gathers the progress metrics alone (see
// childProc.GatherProgress).
type progressGatherer interface {
	GatherProgress() ([]*dto.MetricFamily, error)
}

// unfinishedAt is how far a run got at the end of a wait, with the
// pending workloads' reasons when the scheduler can still be asked.
func unfinishedAt(ctx context.Context, c *Cluster, total int, start time.Time, stalled bool) *Unfinished {
	u := &Unfinished{Total: total, Stalled: stalled, AfterSecond: time.Since(start).Seconds()}
	u.Placed, u.Running, _, _ = progressOf(c)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if p, why, _, err := pendingWhy(lctx, c); err == nil {
		u.Pending, u.Why = p, why
	}
	return u
}

// watchStall follows a run whose waits are its own (one watch per
// workload): once ready says everything was submitted, and nothing has
// changed for after while every workload not RUNNING is pending with no
// feasible node, it records how far the run got and calls cancel. The
// function it returns ends the watch and gives that record (nil when the
// run did not stall).
func watchStall(ctx context.Context, c *Cluster, total int, after time.Duration, start time.Time, ready func() bool, cancel func()) func() *Unfinished {
	done := make(chan struct{})
	result := make(chan *Unfinished, 1)
	go func() {
		sw := newStallWatch(after, start)
		for {
			p, r, pend, err := progressOf(c)
			now := time.Now()
			if err == nil && ready() && sw.stalled(now, p, r, pend) && pend > 0 {
				if _, _, stuck, err := pendingWhy(ctx, c); err == nil && stuck {
					u := unfinishedAt(ctx, c, total, start, true)
					cancel()
					<-done
					result <- u
					return
				}
				sw.restart(now)
			}
			select {
			case <-done:
				result <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() *Unfinished {
		close(done)
		return <-result
	}
}
