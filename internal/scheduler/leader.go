package scheduler

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
)

// ElectionConfig makes a scheduler one replica of several.
type ElectionConfig struct {
	// Address is this replica's ControlService address as clients reach it;
	// it is what followers hand out as the leader's address.
	Address string
	// TTL bounds how long a dead leader keeps its seat (default 5s).
	TTL time.Duration
}

// elected announces that this replica won the election.
func (s *Scheduler) elected() {
	s.events.Add(model.EventLeaderElected, &persysv1.Event{Message: "scheduler " + s.cfg.Election.Address + " leads"})
}

func (s *Scheduler) leaderAddrString() string { return s.elector.Leader() }

// serving refuses calls a follower must not answer (naming the leader in
// the trailer) and calls that come before the cache is loaded.
func (s *Scheduler) serving(ctx context.Context) error {
	if !s.elector.Leading() {
		leader := s.leaderAddrString()
		if leader != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(contract.MetadataLeader, leader))
			return status.Errorf(codes.FailedPrecondition, "not the leader; the leader is %s", leader)
		}
		return status.Error(codes.Unavailable, "no scheduler leads yet; retry shortly")
	}
	if s.Ready() != nil {
		return status.Error(codes.Unavailable, "scheduler is loading its state from etcd; retry shortly")
	}
	return nil
}
