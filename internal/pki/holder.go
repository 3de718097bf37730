package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Holder keeps one identity's current certificate, key and trusted CA
// bundle and hands them to TLS at every handshake, so a renewed
// certificate (Update, Reload) is used by the next handshake while open
// connections go on undisturbed. It is safe for concurrent use.
//
// Server configurations (ServerTLS) read the certificate, the client CA
// bundle and the revocation checker per handshake. Client configurations
// (ClientTLS) read the certificate and the revocation checker per
// handshake; their RootCAs are the bundle at the time ClientTLS was called
// (crypto/tls verifies server names only against a fixed pool), so a
// client that must follow a CA rotation builds its configuration again.
type Holder struct {
	files Files

	mu   sync.RWMutex
	cert *tls.Certificate
	// served is cert with the CA bundle appended to its chain, so that a
	// joining agent can find the CA it pinned by hash (PinnedClientTLS).
	served *tls.Certificate
	pool   *x509.CertPool
	roots  []*x509.Certificate
	rc     RevocationChecker
	// loaded is the fingerprint of the files as Reload last read them,
	// for WatchFiles.
	loaded [sha256.Size]byte
	// nextCA is set when a verified peer showed a CA that one of ours
	// certified but that we do not trust yet (CARotated).
	nextCA atomic.Bool
}

// LoadHolder reads f (CA bundle, certificate, key).
func LoadHolder(f Files) (*Holder, error) {
	h := &Holder{files: f}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// NewHolder returns a holder of the given PEM identity that is not backed
// by files (Update only swaps it in memory).
func NewHolder(certPEM, keyPEM, bundlePEM []byte) (*Holder, error) {
	h := &Holder{}
	if err := h.Update(certPEM, keyPEM, bundlePEM); err != nil {
		return nil, err
	}
	return h, nil
}

// Files returns the files the holder was loaded from (zero for NewHolder).
func (h *Holder) Files() Files { return h.files }

// Reload reads the holder's files again and swaps them in.
func (h *Holder) Reload() error { return h.reload(false) }

// reload reads the files again and swaps them in; with chained, only if
// the certificate chains to the bundle read with it.
func (h *Holder) reload(chained bool) error {
	// Read before loading: a change in between is seen again by WatchFiles.
	fp, _ := h.files.fingerprint()
	pool, cert, err := h.files.load()
	if err != nil {
		return fmt.Errorf("reload identity: %w", err)
	}
	roots, err := ReadCertFile(h.files.CA)
	if err != nil {
		return fmt.Errorf("reload identity: %w", err)
	}
	if chained {
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return fmt.Errorf("reload identity: %w", err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("reload identity: %w: certificate does not chain to the bundle: %w", ErrInvalid, err)
		}
	}
	h.swap(&cert, pool, roots)
	h.mu.Lock()
	h.loaded = fp
	h.mu.Unlock()
	return nil
}

// fingerprint hashes the content of the three files.
func (f Files) fingerprint() ([sha256.Size]byte, error) {
	d := sha256.New()
	for _, p := range []string{f.CA, f.Cert, f.Key} {
		data, err := readFile(p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fmt.Fprintf(d, "%d:", len(data))
		d.Write(data)
	}
	return [sha256.Size]byte(d.Sum(nil)), nil
}

// DefaultWatchInterval is how often WatchFiles looks at the files.
const DefaultWatchInterval = 10 * time.Second

// WatchFiles reloads the holder's files whenever their content changes,
// looked at every interval (default DefaultWatchInterval) until ctx ends,
// so that a CA bundle or certificate replaced on disk (a CA rotation, a
// certificate renewed by another tool) applies to the next handshake
// without a restart. A failed reload (a file half written, a key that
// does not match its certificate yet) keeps the current identity, is
// retried at the next look and logged once per failure streak; so is a
// bundle that the certificate beside it does not chain to. A holder
// without files returns at once.
func (h *Holder) WatchFiles(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if h.files == (Files{}) {
		return
	}
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	// refused is the last set of files that did not load: each new one
	// is logged once, a file left as it is not again at every look.
	var refused [sha256.Size]byte
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := h.files.fingerprint()
		h.mu.RLock()
		same := fp == h.loaded
		h.mu.RUnlock()
		if err == nil && same {
			continue
		}
		if err == nil {
			// A bundle that no longer holds our own CA (a CA file that
			// now names only the next CA) is not swapped in: peers of our
			// CA would be refused until we renew.
			err = h.reload(true)
		}
		switch {
		case err != nil && (!failing || fp != refused):
			failing, refused = true, fp
			log.Warn("identity files changed but do not load; keeping the current identity", "ca", h.files.CA, "cert", h.files.Cert, "err", err)
		case err == nil:
			failing = false
			leaf := h.Leaf()
			log.Info("identity files reloaded", "ca", h.files.CA, "cert", h.files.Cert, "cas", len(h.Roots()),
				"serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter)
		}
	}
}

// Update checks that certPEM and keyPEM belong together and that the
// certificate chains to bundlePEM, writes them to the holder's files (key,
// certificate, then bundle, each replaced atomically) when it has files,
// and swaps them in.
func (h *Holder) Update(certPEM, keyPEM, bundlePEM []byte) error {
	certs, err := parseCerts("certificate", certPEM)
	if err != nil {
		return fmt.Errorf("update identity: %w", err)
	}
	key, err := parseKey("key", keyPEM)
	if err != nil {
		return fmt.Errorf("update identity: %w", err)
	}
	if !keyMatches(certs[0], key) {
		return fmt.Errorf("update identity: %w: key does not match certificate", ErrInvalid)
	}
	roots, err := parseCerts("ca bundle", bundlePEM)
	if err != nil {
		return fmt.Errorf("update identity: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("update identity: %w: certificate does not chain to the bundle: %w", ErrInvalid, err)
	}
	if h.files != (Files{}) {
		if err := writeReplace(h.files.Key, keyPEM, 0o600); err != nil {
			return fmt.Errorf("update identity: %w", err)
		}
		if err := writeReplace(h.files.Cert, certPEM, 0o644); err != nil {
			return fmt.Errorf("update identity: %w", err)
		}
		// An unchanged bundle is not rewritten (it may be the CA's own
		// ca.crt, as in `persys dev`).
		if cur, err := readFile(h.files.CA); err != nil || !bytes.Equal(cur, bundlePEM) {
			if err := writeReplace(h.files.CA, bundlePEM, 0o644); err != nil {
				return fmt.Errorf("update identity: %w", err)
			}
		}
	}
	chain := make([][]byte, 0, len(certs))
	for _, c := range certs {
		chain = append(chain, c.Raw)
	}
	h.swap(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: certs[0]}, pool, roots)
	if h.files != (Files{}) {
		// What was just written is loaded: WatchFiles need not reload it.
		if fp, err := h.files.fingerprint(); err == nil {
			h.mu.Lock()
			h.loaded = fp
			h.mu.Unlock()
		}
	}
	return nil
}

func (h *Holder) swap(cert *tls.Certificate, pool *x509.CertPool, roots []*x509.Certificate) {
	served := *cert
	served.Certificate = append([][]byte(nil), cert.Certificate...)
	for _, r := range roots {
		dup := false
		for _, c := range served.Certificate {
			dup = dup || string(c) == string(r.Raw)
		}
		if !dup {
			served.Certificate = append(served.Certificate, r.Raw)
		}
	}
	h.mu.Lock()
	h.cert, h.served, h.pool, h.roots = cert, &served, pool, roots
	h.mu.Unlock()
	h.nextCA.Store(false)
}

// SetRevocationChecker makes every later handshake refuse peers rc reports
// revoked; nil checks nothing.
func (h *Holder) SetRevocationChecker(rc RevocationChecker) {
	h.mu.Lock()
	h.rc = rc
	h.mu.Unlock()
}

// Leaf returns the current certificate.
func (h *Holder) Leaf() *x509.Certificate {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cert.Leaf
}

// Roots returns the trusted CA certificates.
func (h *Holder) Roots() []*x509.Certificate {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]*x509.Certificate(nil), h.roots...)
}

// Pool returns the trusted CA pool.
func (h *Holder) Pool() *x509.CertPool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.pool
}

// Certificate returns the current key pair.
func (h *Holder) Certificate() *tls.Certificate {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cert
}

// RenewAt returns when the current certificate should be renewed: after
// fraction of its lifetime (0 < fraction < 1; anything else means 2/3).
func (h *Holder) RenewAt(fraction float64) time.Time {
	return RenewAt(h.Leaf(), fraction)
}

// RenewAt returns NotBefore plus fraction of c's lifetime (0 < fraction <
// 1; anything else means 2/3), counting from issuance (see IssuedAt).
func RenewAt(c *x509.Certificate, fraction float64) time.Time {
	if fraction <= 0 || fraction >= 1 {
		fraction = 2.0 / 3
	}
	start := IssuedAt(c)
	life := c.NotAfter.Sub(start)
	return start.Add(time.Duration(float64(life) * fraction))
}

func (h *Holder) revoked() RevocationChecker {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rc
}

// verifyRevocation is a VerifyConnection hook reading the current checker;
// it also notes a rotated CA that a verified peer shows (CARotated).
func (h *Holder) verifyRevocation(cs tls.ConnectionState) error {
	if err := VerifyConnection(h.revoked())(cs); err != nil {
		return err
	}
	h.noteNextCA(cs.PeerCertificates)
	return nil
}

// CARotated reports whether a peer that passed verification presented a
// CA certificate that one of our CAs signed for a key we do not trust
// yet: the cross-signed certificate `persys ca rotate` puts in every
// bundle, which peers that renewed present with their chain. Nobody
// without a CA key of ours can make one. A renewal (which brings the new
// bundle) clears it; Renewer.Stale uses it to renew at once instead of at
// the end of the lifetime.
func (h *Holder) CARotated() bool { return h.nextCA.Load() }

// noteNextCA sets nextCA when chain (a verified peer's, leaf first) holds
// a CA certificate for a key outside our bundle that one of our CAs signed.
func (h *Holder) noteNextCA(chain []*x509.Certificate) {
	if len(chain) < 2 || h.nextCA.Load() {
		return
	}
	h.mu.RLock()
	roots := h.roots
	h.mu.RUnlock()
	for _, c := range chain[1:] {
		if !c.IsCA || trustsKey(roots, c) {
			continue
		}
		for _, r := range roots {
			if c.CheckSignatureFrom(r) == nil {
				h.nextCA.Store(true)
				return
			}
		}
	}
}

func trustsKey(roots []*x509.Certificate, c *x509.Certificate) bool {
	for _, r := range roots {
		if bytes.Equal(r.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}

// ServerTLS returns a TLS 1.3 server configuration that presents the
// current certificate, verifies client certificates against the current
// bundle with auth (tls.RequireAndVerifyClientCert, or
// tls.VerifyClientCertIfGiven where a call may come without a certificate)
// and refuses revoked ones.
func (h *Holder) ServerTLS(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: auth,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			h.mu.RLock()
			defer h.mu.RUnlock()
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{*h.served},
				ClientAuth:       auth,
				ClientCAs:        h.pool,
				VerifyConnection: h.verifyRevocation,
			}, nil
		},
	}
}

// ClientTLS returns a TLS 1.3 client configuration that presents the
// current certificate, trusts the current bundle (fixed in the returned
// configuration) for servers named serverName (empty: the dialled host)
// and refuses revoked servers.
func (h *Holder) ClientTLS(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    h.Pool(),
		ServerName: serverName,
		// The bundle goes with the chain, as for servers (see swap).
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			h.mu.RLock()
			defer h.mu.RUnlock()
			return h.served, nil
		},
		VerifyConnection: h.verifyRevocation,
	}
}

// PinnedClientTLS returns a TLS 1.3 client configuration without a client
// certificate that trusts a server only if the chain it presents contains a
// CA certificate whose public-key hash (HashCert) is caHash and the
// server's certificate verifies against that CA for serverName (a DNS name
// or an IP address; required). Nothing is trusted on first use: a server
// of another CA fails the handshake before any request is sent.
func PinnedClientTLS(caHash, serverName string) (*tls.Config, error) {
	if err := ValidateCAHash(caHash); err != nil {
		return nil, err
	}
	if serverName == "" {
		return nil, fmt.Errorf("server name: %w: empty", ErrInvalid)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		// Verified below against the pinned CA instead of system roots.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("ca hash: %w: server presented no certificate", ErrInvalid)
			}
			pool := x509.NewCertPool()
			found := false
			for _, c := range cs.PeerCertificates[1:] {
				if c.IsCA && HashCert(c) == caHash {
					pool.AddCert(c)
					found = true
				}
			}
			if !found {
				return fmt.Errorf("ca hash: %w: the server's chain holds no CA with hash %s", ErrInvalid, caHash)
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter, DNSName: serverName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("ca hash: %w: server certificate does not verify against the pinned CA: %w", ErrInvalid, err)
			}
			return nil
		},
	}, nil
}

// ValidateCAHash checks the form "sha256:" followed by 64 hex digits.
func ValidateCAHash(h string) error {
	const prefix = "sha256:"
	if len(h) != len(prefix)+64 || h[:len(prefix)] != prefix {
		return fmt.Errorf("ca hash %q: %w: want sha256:<64 hex digits>", h, ErrInvalid)
	}
	for _, c := range h[len(prefix):] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("ca hash %q: %w: want lowercase hex digits", h, ErrInvalid)
		}
	}
	return nil
}

// NewHolderFiles checks the PEM identity, writes it to f (key 0600,
// certificate and bundle 0644, each replaced atomically) and returns a
// holder backed by f.
func NewHolderFiles(f Files, certPEM, keyPEM, bundlePEM []byte) (*Holder, error) {
	for _, p := range []struct{ field, path string }{{"ca file", f.CA}, {"cert file", f.Cert}, {"key file", f.Key}} {
		if p.path == "" {
			return nil, fmt.Errorf("%s: %w: empty path", p.field, ErrInvalid)
		}
	}
	h := &Holder{files: f}
	if err := h.Update(certPEM, keyPEM, bundlePEM); err != nil {
		return nil, err
	}
	return h, nil
}
