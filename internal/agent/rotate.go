package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// SchedulerRenewal renews the agent's certificate through the schedulers'
// RenewCertificate, over mTLS with the holder's current certificate. Its
// Renew method is a pki.RenewFunc for pki.Renewer. Close it when done.
type SchedulerRenewal struct {
	addrs  []string
	holder *pki.Holder

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewSchedulerRenewal prepares renewals against the schedulers at addrs
// (tried in order), authenticating with h.
func NewSchedulerRenewal(addrs []string, h *pki.Holder) (*SchedulerRenewal, error) {
	if len(addrs) == 0 || h == nil {
		return nil, errors.New("agent: renewal needs scheduler addresses and an identity holder")
	}
	return &SchedulerRenewal{addrs: append([]string(nil), addrs...), holder: h, conns: map[string]*grpc.ClientConn{}}, nil
}

func (r *SchedulerRenewal) conn(addr string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[addr]; ok {
		return c, nil
	}
	// The holder's certificate and bundle apply at every handshake.
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(grpcauth.HolderCredentials(r.holder, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		return nil, err
	}
	r.conns[addr] = c
	return c, nil
}

// Renew sends csrPEM to the first scheduler that answers.
func (r *SchedulerRenewal) Renew(ctx context.Context, _ *x509.Certificate, csrPEM []byte) ([]byte, []byte, error) {
	var errs []error
	for _, addr := range r.addrs {
		c, err := r.conn(addr)
		if err == nil {
			var resp *persysv1.RenewCertificateResponse
			resp, err = persysv1grpc.NewControlServiceClient(c).RenewCertificate(ctx, &persysv1.RenewCertificateRequest{CsrPem: csrPEM})
			if err == nil {
				return resp.GetCertificatePem(), resp.GetCaBundlePem(), nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, nil, fmt.Errorf("renew certificate: %w", errors.Join(errs...))
}

// Close closes the connections.
func (r *SchedulerRenewal) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for a, c := range r.conns {
		errs = append(errs, c.Close())
		delete(r.conns, a)
	}
	return errors.Join(errs...)
}

var _ pki.RenewFunc = (*SchedulerRenewal)(nil).Renew
