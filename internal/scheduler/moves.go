package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
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
	s.mu.Lock()
	addr, alive := "", false
	if ne := s.nodes[prev]; ne != nil {
		addr, alive = ne.node.GetAddress(), ne.alive
	}
	s.mu.Unlock()
	if alive {
		actx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
		defer cancel()
		err := s.agents().call(actx, prev, addr, func(cli persysv1grpc.AgentServiceClient) error {
			_, err := cli.DeleteWorkload(actx, &persysv1.DeleteWorkloadRequest{Name: name, Uid: v.w.GetUid()})
			return err
		})
		if err != nil {
			s.log.Warn("remove previous copy", "workload", name, "node", prev, "err", err)
			s.queue.AddAfter(name, time.Second)
			return
		}
		s.mu.Lock()
		if ne := s.nodes[prev]; ne != nil {
			ne.setReport(name, nil)
		}
		s.mu.Unlock()
	}
	a := proto.Clone(v.assign).(*persysv1.Assignment)
	a.PreviousNodeId = ""
	// The commit writes a status too: keep the one the new copy has (a
	// nil one would read SCHEDULED while the new copy runs).
	var st *persysv1.WorkloadStatus
	s.mu.Lock()
	if e := s.workloads[name]; e != nil && e.status.GetNodeId() == a.GetNodeId() {
		st = proto.Clone(e.status).(*persysv1.WorkloadStatus)
	}
	s.mu.Unlock()
	rev, err := s.store.CommitPlacementRev(ctx, a, st, v.rev, v.assignRv)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			s.log.Error("clear previous node", "workload", name, "err", err)
		}
		s.queue.AddAfter(name, 100*time.Millisecond)
		return
	}
	s.mu.Lock()
	s.invalidateLocked()
	if e := s.workloads[name]; e != nil && e.rev == v.rev {
		s.setAssignmentLocked(name, e, a, rev)
		s.notifyLocked(name)
	}
	s.mu.Unlock()
	// Look once more: the move is over, and the status may lag the node.
	s.queue.Add(name)
	s.metrics.moves.Inc()
	s.log.Info("moved", "workload", name, "from", prev, "to", a.GetNodeId())
	s.events.Add(model.EventMoved, &persysv1.Event{Workload: name, NodeId: a.GetNodeId(),
		Message: fmt.Sprintf("moved from %s to %s", prev, a.GetNodeId())})
}

// setCordon records a node's cordon and drain flags in etcd and the cache.
func (s *Scheduler) setCordon(ctx context.Context, id string, cordoned, draining bool) (*persysv1.Node, error) {
	s.mu.Lock()
	ne := s.nodes[id]
	if ne == nil || ne.node == nil {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "node %q not found", id)
	}
	n := cloneNode(ne.node)
	n.Cordoned, n.Draining = cordoned, draining
	ne.node = n
	s.invalidateLocked()
	s.mu.Unlock()
	if err := s.store.PutNode(ctx, n); err != nil {
		return nil, err
	}
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
	views := s.nodeViews(id)
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
	s.mu.Lock()
	var names []string
	for name, e := range s.workloads {
		if e.assignment.GetNodeId() == id {
			e.moveBlocked = ""
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		s.queue.Add(n)
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, settled := s.drainState(id, names)
		if settled {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			resp, _ = s.drainState(id, names)
			return resp, nil
		case <-tick.C:
		}
	}
}

// drainState reports each drained workload; settled is true when none is
// still in flight (each moved, is blocked, or is gone).
func (s *Scheduler) drainState(id string, names []string) (*persysv1.DrainResponse, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &persysv1.DrainResponse{Complete: true}
	settled := true
	for _, name := range names {
		e := s.workloads[name]
		r := &persysv1.DrainResult{Workload: name}
		switch {
		case e == nil || e.w.GetDeleting():
			r.Result, r.Message = "moved", "workload deleted"
		case e.assignment.GetNodeId() != id && e.assignment.GetPreviousNodeId() == "":
			r.Result, r.ToNode = "moved", e.assignment.GetNodeId()
		case e.moveBlocked != "":
			r.Result, r.Reason, r.Message = "unmoved", persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE, e.moveBlocked
			resp.Complete = false
		default:
			r.Result, r.ToNode = "unmoved", e.assignment.GetNodeId()
			r.Message = "replacement not running yet"
			if e.assignment.GetNodeId() == id {
				r.Message = "not moved yet"
			}
			if st := e.status; st != nil && st.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
				r.Reason, r.Message = st.GetReason(), st.GetMessage()
			}
			resp.Complete = false
			settled = false
		}
		resp.Workloads = append(resp.Workloads, r)
	}
	if ne := s.nodes[id]; ne != nil {
		resp.Node = cloneNode(ne.node)
	}
	return resp, settled
}
