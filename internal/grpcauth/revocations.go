package grpcauth

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

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

// RefuseRevoked returns interceptors that refuse every call (PermissionDenied)
// whose connection's client certificate rc reports revoked. The handshake
// already refuses revoked peers (pki.Holder); these catch connections
// opened before the revocation, which gRPC keeps open for later calls.
// A nil rc refuses nothing. Health checks are not refused.
func RefuseRevoked(rc pki.RevocationChecker) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) error {
		if rc == nil || strings.HasPrefix(method, healthPrefix) {
			return nil
		}
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(info.State.PeerCertificates) == 0 {
			return nil // no certificate: RequireRole refuses the call
		}
		c := info.State.PeerCertificates[0]
		if rc.Revoked(c) {
			return status.Errorf(codes.PermissionDenied, "%s: certificate %q serial %s is revoked", method, c.Subject.CommonName, c.SerialNumber.Text(16))
		}
		return nil
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	return unary, stream
}
