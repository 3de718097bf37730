package grpcauth

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
)

// RevocationLister is the one ControlService call PollRevocations needs.
type RevocationLister interface {
	ListRevocations(ctx context.Context, in *persysv1.ListRevocationsRequest, opts ...grpc.CallOption) (*persysv1.ListRevocationsResponse, error)
}

// ToRevocation converts the wire form.
func ToRevocation(r *persysv1.Revocation) pki.Revocation {
	return pki.Revocation{Serial: strings.ToLower(r.GetSerial()), NodeID: r.GetNodeId(), User: r.GetUser(), At: r.GetRevokedAt().AsTime()}
}

// PollRevocations keeps set equal to the scheduler's revocations, fetched
// now and every interval until ctx ends. Components without etcd (the
// gateway) use it; install set with pki.Holder.SetRevocationChecker. A
// failed fetch keeps the last list and is logged once per failure streak.
func PollRevocations(ctx context.Context, c RevocationLister, set *pki.RevocationSet, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failing := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval)
		resp, err := c.ListRevocations(cctx, &persysv1.ListRevocationsRequest{})
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			log.Warn("fetch revocations failed; keeping the last list", "err", err)
		case err == nil:
			if failing {
				log.Info("fetching revocations again")
			}
			failing = false
			list := make([]pki.Revocation, 0, len(resp.GetRevocations()))
			for _, r := range resp.GetRevocations() {
				list = append(list, ToRevocation(r))
			}
			set.Replace(list)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
