package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// reschedule places a workload away from its node: a lost node's copy is
// fenced (removed as an orphan when the node reports again), a draining
// node's copy keeps running until the new one does.
func (s *Scheduler) reschedule(ctx context.Context, name string, v view) bool {
	var placed bool
	if v.in.NodeReady {
		placed = s.placeFrom(ctx, name, v, model.CauseDrain, v.in.Node)
	} else {
		placed = s.placeFrom(ctx, name, v, model.CauseNodeLost, "")
	}
	if placed {
		// A new node starts a new series of attempts: what failed on the
		// old one says nothing about this one.
		s.resetAttempts(name)
	}
	return placed
}

// removePrevious removes the old copy of a moved workload once the new one
// runs, then forgets the previous node in the assignment.
func (s *Scheduler) removePrevious(ctx context.Context, name string, v view) {
	prev := v.in.PreviousNode
	failpoint.Inject(failpoint.SchedulerMidMove)
	_, alive, _ := s.cache.NodeAddress(prev)
	if alive {
		err := s.agents().call(ctx, prev, s.cfg.ApplyTimeout, func(cctx context.Context, cli persysv1grpc.AgentServiceClient) error {
			_, err := cli.DeleteWorkload(cctx, &persysv1.DeleteWorkloadRequest{Name: name, Uid: v.w.GetUid()})
			return err
		})
		if err != nil {
			s.log.Warn("remove previous copy", "workload", name, "node", prev, "err", err)
			s.queue.AddAfter(name, time.Second)
			return
		}
		s.cache.SetReport(prev, name, nil)
	}
	a := v.assign.Proto()
	a.PreviousNodeId, a.PreviousDynamicHostPorts = "", nil
	// The commit writes a status too: keep the one the new copy has (a
	// nil one would read SCHEDULED while the new copy runs).
	st := s.cache.StatusOn(name, a.GetNodeId())
	rev, err := s.store.CommitPlacementRev(ctx, a, st, v.rev, v.assignRv)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			s.log.Error("clear previous node", "workload", name, "err", err)
		}
		s.queue.AddAfter(name, 100*time.Millisecond)
		return
	}
	s.cache.PreviousCleared(name, v.rev, a, rev)
	// Look once more: the move is over, and the status may lag the node.
	s.queue.Add(name)
	s.metrics.moves.Inc()
	s.log.Info("moved", "workload", name, "from", prev, "to", a.GetNodeId())
	s.events.Add(model.EventMoved, &persysv1.Event{Workload: name, NodeId: a.GetNodeId(),
		Message: fmt.Sprintf("moved from %s to %s", prev, a.GetNodeId())})
}

// setCordon records a node's cordon and drain flags in etcd and the cache.
func (s *Scheduler) setCordon(ctx context.Context, id string, cordoned, draining bool) (*persysv1.Node, error) {
	n := s.cache.SetCordon(id, cordoned, draining)
	if n == nil {
		return nil, status.Errorf(codes.NotFound, "node %q not found", id)
	}
	rev, err := s.store.PutNode(ctx, n)
	if err != nil {
		return nil, err
	}
	s.cache.NodeWritten(id, rev)
	what := model.EventNodeCordoned
	switch {
	case draining:
		what = model.EventNodeDraining
	case !cordoned:
		what = model.EventNodeUncordoned
	}
	s.log.Info("node scheduling changed", "node", id, "cordoned", cordoned, "draining", draining, "by", principal.CN(ctx))
	s.events.Add(what, &persysv1.Event{NodeId: id, Message: "by " + principal.CN(ctx)})
	if !cordoned {
		s.queuePending()
	}
	views := s.cache.NodeViews(id)
	if len(views) == 0 {
		return n, nil
	}
	return views[0], nil
}

// drain cordons the node, moves its workloads and waits until each moved or
// the deadline passed.
func (s *Scheduler) drain(ctx context.Context, id string, timeout time.Duration) (*persysv1.DrainResponse, error) {
	if _, err := s.setCordon(ctx, id, true, true); err != nil {
		return nil, err
	}
	names := s.cache.StartDrain(id)
	sort.Strings(names)
	for _, n := range names {
		s.queue.Add(n)
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, settled := s.cache.DrainState(id, names)
		if settled {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			resp, _ = s.cache.DrainState(id, names)
			return resp, nil
		case <-tick.C:
		}
	}
}
