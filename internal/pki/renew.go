package pki

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// DefaultRenewFraction is the share of a certificate's lifetime after
// which it is renewed.
const DefaultRenewFraction = 2.0 / 3

// RenewFunc obtains a certificate for csrPEM (same common name as current)
// and returns it with the CA bundle to trust from then on.
type RenewFunc func(ctx context.Context, current *x509.Certificate, csrPEM []byte) (certPEM, bundlePEM []byte, err error)

// Renewer renews the certificate in Holder before it expires: at Fraction
// of its lifetime it makes a new key, sends a CSR through Renew and swaps
// the result into the holder, so the next handshakes use it while open
// connections continue. A failed renewal is retried with backoff until the
// certificate expires and beyond.
type Renewer struct {
	Holder *Holder
	Renew  RenewFunc
	// Fraction of the lifetime after which to renew, in (0, 1); default
	// DefaultRenewFraction.
	Fraction float64
	// Logger receives one line per renewal; nil is silent.
	Logger *slog.Logger
	// Renewed, when set, is called after each successful renewal.
	Renewed func(leaf *x509.Certificate)
	// Stale, when set, is asked every Recheck (default 10s) whether the
	// current certificate must be renewed at once (for example because the
	// CA was rotated: SignedByOtherCA).
	Stale   func(leaf *x509.Certificate) bool
	Recheck time.Duration
}

// Run renews until ctx ends; it returns nil then.
func (r *Renewer) Run(ctx context.Context) error {
	if r.Holder == nil || r.Renew == nil {
		return fmt.Errorf("renewer: %w: Holder and Renew are required", ErrInvalid)
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := time.Second
	for {
		leaf := r.Holder.Leaf()
		if !r.wait(ctx, leaf) {
			return nil
		}
		if err := r.renewOnce(ctx, leaf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("certificate renewal failed; retrying", "name", leaf.Subject.CommonName, "serial", leaf.SerialNumber.Text(16),
				"expires", leaf.NotAfter, "retry_in", backoff.String(), "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		next := r.Holder.Leaf()
		log.Info("certificate renewed", "name", next.Subject.CommonName, "old_serial", leaf.SerialNumber.Text(16),
			"serial", next.SerialNumber.Text(16), "expires", next.NotAfter)
		if r.Renewed != nil {
			r.Renewed(next)
		}
	}
}

// wait returns when leaf is due for renewal (true) or ctx ended (false).
func (r *Renewer) wait(ctx context.Context, leaf *x509.Certificate) bool {
	wait := time.Until(RenewAt(leaf, r.Fraction))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var recheck <-chan time.Time
	if r.Stale != nil {
		every := r.Recheck
		if every <= 0 {
			every = 10 * time.Second
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		recheck = tick.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-recheck:
			if r.Stale(leaf) {
				return true
			}
		}
	}
}

// SignedByOtherCA returns a Renewer.Stale function that reports a
// certificate not signed by the current CA of caDir (after `persys ca
// rotate`). An unreadable CA folder reports nothing stale.
func SignedByOtherCA(caDir string) func(*x509.Certificate) bool {
	return func(leaf *x509.Certificate) bool {
		certs, err := ReadCertFile(filepath.Join(caDir, CACertFile))
		if err != nil {
			return false
		}
		return leaf.CheckSignatureFrom(certs[0]) != nil
	}
}

func (r *Renewer) renewOnce(ctx context.Context, leaf *x509.Certificate) error {
	key, err := NewKey()
	if err != nil {
		return err
	}
	csr, err := NewCSR(leaf.Subject.CommonName, key)
	if err != nil {
		return err
	}
	certPEM, bundlePEM, err := r.Renew(ctx, leaf, csr)
	if err != nil {
		return err
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if !keyMatches(cert, key) {
		return fmt.Errorf("renewed certificate: %w: it is not for the key sent", ErrInvalid)
	}
	if cert.Subject.CommonName != leaf.Subject.CommonName {
		return fmt.Errorf("renewed certificate: %w: common name %q, want %q", ErrInvalid, cert.Subject.CommonName, leaf.Subject.CommonName)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	return r.Holder.Update(certPEM, keyPEM, bundlePEM)
}

// LocalRenew signs renewals with the CA in caDir (read at every renewal,
// so a rotated CA is picked up), keeping the common name, role and names
// of the current certificate; validity 0 means DefaultLeafValidity. For
// components that hold the CA key (the scheduler, `persys dev`).
func LocalRenew(caDir string, validity time.Duration) RenewFunc {
	return func(_ context.Context, current *x509.Certificate, csrPEM []byte) ([]byte, []byte, error) {
		ca, err := LoadCA(caDir)
		if err != nil {
			return nil, nil, err
		}
		bundle, _, err := LoadBundle(caDir, time.Now())
		if err != nil {
			return nil, nil, err
		}
		csr, err := ParseCSR(csrPEM)
		if err != nil {
			return nil, nil, err
		}
		id, err := IdentityFromCert(current)
		if err != nil {
			return nil, nil, err
		}
		certPEM, err := ca.SignCSR(csr, IssueRequest{CommonName: id.CommonName, Role: id.Role, DNSNames: current.DNSNames, IPs: current.IPAddresses, Validity: validity})
		if err != nil {
			return nil, nil, err
		}
		return certPEM, bundle, nil
	}
}
