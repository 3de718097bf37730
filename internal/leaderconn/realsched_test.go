package leaderconn_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestRealReplicas runs two real schedulers that elect a leader and calls
// them through the follower only: the refusal the scheduler sends is the
// one the pool follows.
func TestRealReplicas(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Replicas: 2, NoSecrets: true})
	li := c.Leader(t)
	leader, follower := c.Addrs[li], c.Addrs[1-li]
	tlsCfg, err := pki.ClientTLS(c.Bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T, log *slog.Logger) *leaderconn.Pool {
		p, err := leaderconn.Dial(leaderconn.Config{Addrs: []string{follower}, TLS: tlsCfg, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}

	t.Run("unary call through the follower reaches the leader", func(t *testing.T) {
		logs := &realsched.Buffer{}
		p := dial(t, slog.New(slog.NewJSONHandler(logs, nil)))
		var by string
		if _, err := persysv1grpc.NewControlServiceClient(p).ListNodes(t.Context(), &persysv1.ListNodesRequest{}, leaderconn.AnsweredBy(&by)); err != nil {
			t.Fatal(err)
		}
		if p.Current() != leader || by != leader {
			t.Fatalf("current %s, answered by %s; want the leader %s", p.Current(), by, leader)
		}
		if !strings.Contains(logs.String(), `"msg":"following scheduler leader"`) {
			t.Errorf("no redirect logged:\n%s", logs)
		}
	})

	t.Run("NoFollow reports the move and points at the leader", func(t *testing.T) {
		p := dial(t, nil)
		var by string
		_, err := persysv1grpc.NewControlServiceClient(p).ListNodes(t.Context(), &persysv1.ListNodesRequest{},
			leaderconn.NoFollow(), leaderconn.AnsweredBy(&by))
		if !errors.Is(err, leaderconn.ErrLeaderMoved) || status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("err %v, want ErrLeaderMoved with the follower's FailedPrecondition", err)
		}
		if p.Current() != leader || by != follower {
			t.Fatalf("current %s, answered by %s; want %s and %s", p.Current(), by, leader, follower)
		}
	})

	t.Run("a stream refused by the follower is opened on the leader", func(t *testing.T) {
		p := dial(t, nil)
		stream, err := persysv1grpc.NewControlServiceClient(p).WatchWorkload(t.Context(), &persysv1.GetWorkloadRequest{Name: "nothing"})
		if err != nil {
			t.Fatal(err)
		}
		// The leader's answer, not the follower's refusal.
		if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
			t.Fatalf("recv: %v, want the leader's NotFound", err)
		}
		if p.Current() != leader {
			t.Fatalf("current %s, want the leader %s", p.Current(), leader)
		}
	})
}
