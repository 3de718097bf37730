package identity

// Node identity: join tokens, certificate signing for joining agents,
// renewals, and revocations.
//
// A join token is "<id>.<secret>"; etcd keeps the public part and the
// SHA-256 of the secret. JoinNode checks the token (known, secret right,
// not expired, not revoked, uses left), the CSR (well formed, self-signed,
// P-256) and that the node id (the CSR's common name) is not held, signs
// a certificate with role agent, and commits the token's use count and the
// node's identity record in one etcd transaction, so nothing is stored on
// a refusal and a single-use token cannot be redeemed twice.
//
// A node id is held when its identity record names a certificate that has
// not expired and is not revoked, or, without such a record (a certificate
// issued by `persys ca issue` or `persys dev`), when the node is registered
// and alive. A holder that lost its key is freed by revoking the node.
//
// Revocations live in etcd; RunIdentity keeps the in-memory set current
// from a watch. The TLS layer (pki.Holder with the set as its checker)
// refuses revoked certificates at the handshake, the interceptors refuse
// calls on connections opened before the revocation, and a revoked node's
// lease is revoked at once so it turns NotReady and its workloads move as
// for a lost node.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// Limits on identity requests.
const (
	maxTokenTTL      = 365 * 24 * time.Hour
	maxTokenUses     = 1_000_000
	maxTokenLabels   = 32
	maxCSRNames      = 8
	tokenIDBytes     = 6
	tokenSecretBytes = 16
	joinCommitTries  = 5
)

// CAConfig turns on the signing calls. Without a CADir, JoinNode,
// RenewCertificate and CreateJoinToken answer FailedPrecondition; the other
// identity calls (listing and revoking) work without it.
type CAConfig struct {
	// CADir holds ca.crt and ca.key (the signing CA) and, after a
	// rotation, ca-bundle.crt. It is read at every signing, so `persys ca
	// rotate` takes effect without a restart.
	CADir string
	// CertValidity is the lifetime of certificates signed for joins and
	// renewals (default pki.DefaultLeafValidity).
	CertValidity time.Duration
}

// SetCA configures the signing calls; call it before serving.
func (s *Service) SetCA(cfg CAConfig) {
	if cfg.CertValidity <= 0 {
		cfg.CertValidity = pki.DefaultLeafValidity
	}
	s.mu.Lock()
	s.ca = cfg
	s.mu.Unlock()
}

// Revocations is the revocation set, kept current by Run; install it in
// the TLS holders (pki.Holder.SetRevocationChecker).
func (s *Service) Revocations() *pki.RevocationSet { return s.revoked }

func (s *Service) caConfig() CAConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ca
}

// loadCA reads the signing CA and the trusted bundle.
func (s *Service) loadCA() (*pki.CA, []byte, error) {
	cfg := s.caConfig()
	if cfg.CADir == "" {
		return nil, nil, status.Error(codes.FailedPrecondition, "this scheduler has no CA key (start it with --ca-dir) and cannot sign certificates")
	}
	ca, err := pki.LoadCA(cfg.CADir)
	if err != nil {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "load CA: %v", err)
	}
	bundle, _, err := pki.LoadBundle(cfg.CADir, time.Now())
	if err != nil {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "load CA bundle: %v", err)
	}
	return ca, bundle, nil
}

// Run keeps the revocation set current from etcd and turns revoked nodes
// NotReady, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for list := range s.store.WatchRevocations(ctx) {
		s.applyRevocations(ctx, list)
	}
	return nil
}

func toPKI(r *persysv1.Revocation) pki.Revocation {
	return pki.Revocation{Serial: strings.ToLower(r.GetSerial()), NodeID: r.GetNodeId(), User: r.GetUser(), At: r.GetRevokedAt().AsTime()}
}

func (s *Service) applyRevocations(ctx context.Context, list []*persysv1.Revocation) {
	rs := make([]pki.Revocation, 0, len(list))
	for _, r := range list {
		rs = append(rs, toPKI(r))
	}
	s.revoked.Replace(rs)
	// Nodes whose current certificate is now revoked lose their lease.
	leases := s.nodes.AliveNodeLeases()
	for _, t := range slices.Sorted(maps.Keys(leases)) {
		why := s.nodeRevocation(t, rs)
		if why == "" {
			continue
		}
		key := t + "|" + why
		s.mu.Lock()
		done := !s.handled[key].IsZero()
		if !done {
			s.handled[key] = time.Now()
		}
		s.mu.Unlock()
		if done {
			continue
		}
		s.log.Warn("node identity revoked; ending its lease", "node", t, "revocation", why)
		s.events.Add(model.EventNodeRevoked, &persysv1.Event{NodeId: t, Reason: persysv1.FailureReason_FAILURE_REASON_NODE_REVOKED,
			Message: "node identity revoked (" + why + "): refused from now on, its workloads move as for a lost node"})
		if lease := leases[t]; lease != 0 {
			if err := s.store.RevokeNodeLease(ctx, lease); err != nil {
				s.log.Error("revoke lease of revoked node", "node", t, "err", err)
			}
		}
	}
}

// nodeRevocation says why node id's current certificate is revoked, or "".
func (s *Service) nodeRevocation(nodeID string, rs []pki.Revocation) string {
	s.mu.Lock()
	serial := s.serials[nodeID]
	s.mu.Unlock()
	for _, r := range rs {
		switch {
		case r.NodeID == nodeID:
			return "node " + nodeID + " at " + r.At.UTC().Format(time.RFC3339)
		case r.Serial != "" && r.Serial == serial:
			return "serial " + serial
		}
	}
	return ""
}

// peerCert returns the verified leaf certificate of the caller, if any.
func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// CheckRevoked refuses a caller whose certificate was revoked after its
// connection was opened (new handshakes are refused by TLS) and, on an
// agent's call (agentCall), remembers which certificate each node speaks
// with.
func (s *Service) CheckRevoked(ctx context.Context, method string, agentCall bool) error {
	c := peerCert(ctx)
	if c == nil {
		return nil
	}
	if s.revoked.Revoked(c) {
		reason := persysv1.FailureReason_FAILURE_REASON_NODE_REVOKED
		return rpcreason.Error(codes.PermissionDenied, reason, fmt.Sprintf("%s: certificate %q serial %s is revoked (%s)", method,
			c.Subject.CommonName, c.SerialNumber.Text(16), contract.Name(reason)))
	}
	if agentCall && len(c.Subject.OrganizationalUnit) == 1 && c.Subject.OrganizationalUnit[0] == string(pki.RoleAgent) {
		s.mu.Lock()
		s.serials[c.Subject.CommonName] = c.SerialNumber.Text(16)
		s.mu.Unlock()
	}
	return nil
}

// ParseJoinToken splits "<id>.<secret>" and checks its shape.
func ParseJoinToken(token string) (id, secret string, err error) {
	if len(token) > 200 {
		return "", "", errors.New("token: longer than 200 characters")
	}
	id, secret, ok := strings.Cut(token, ".")
	if !ok || id == "" || secret == "" {
		return "", "", errors.New("token: want <id>.<secret>")
	}
	for _, part := range []string{id, secret} {
		for _, c := range part {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", "", errors.New("token: want <id>.<secret> in lowercase hex digits")
			}
		}
	}
	return id, secret, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func validateLabels(field string, labels map[string]string) error {
	if len(labels) > maxTokenLabels {
		return fmt.Errorf("%s: more than %d labels", field, maxTokenLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > 63 || len(v) > 253 {
			return fmt.Errorf("%s: label %q: key must be 1-63 characters and value at most 253", field, k)
		}
		for _, c := range k + v {
			if c < 0x21 || c == 0x7f || c == ',' || c == '=' {
				return fmt.Errorf("%s: label %q: character %q not allowed", field, k, c)
			}
		}
	}
	return nil
}

func (s *Service) CreateJoinToken(ctx context.Context, req *persysv1.CreateJoinTokenRequest) (*persysv1.CreateJoinTokenResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if req.GetTtlSeconds() <= 0 || ttl > maxTokenTTL {
		return nil, status.Errorf(codes.InvalidArgument, "ttl_seconds %d: must be in 1..%d", req.GetTtlSeconds(), int64(maxTokenTTL/time.Second))
	}
	if req.GetMaxUses() < 0 || req.GetMaxUses() > maxTokenUses {
		return nil, status.Errorf(codes.InvalidArgument, "max_uses %d: must be in 0..%d (0: unlimited)", req.GetMaxUses(), maxTokenUses)
	}
	if err := validateLabels("labels", req.GetLabels()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ca, _, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	tid, err := randomHex(tokenIDBytes)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(tokenSecretBytes)
	if err != nil {
		return nil, err
	}
	now := s.now()
	t := &persysv1.JoinToken{
		Id:        tid,
		ExpiresAt: timestamppb.New(now.Add(ttl)),
		MaxUses:   req.GetMaxUses(),
		Labels:    req.GetLabels(),
		CreatedAt: timestamppb.New(now),
		CreatedBy: principal.CN(ctx),
	}
	if err := s.store.CreateJoinToken(ctx, t, store.HashSecret(secret)); err != nil {
		return nil, err
	}
	s.log.Info("join token created", "token_id", tid, "expires", t.GetExpiresAt().AsTime(), "max_uses", t.GetMaxUses(), "by", t.GetCreatedBy())
	s.events.Add(model.EventJoinTokenCreated, &persysv1.Event{Actor: t.GetCreatedBy(), Message: "join token " + tid + " created"})
	return &persysv1.CreateJoinTokenResponse{Token: tid + "." + secret, CaHash: pki.HashCert(ca.Cert), Info: t}, nil
}

func (s *Service) ListJoinTokens(ctx context.Context, _ *persysv1.ListJoinTokensRequest) (*persysv1.ListJoinTokensResponse, error) {
	ts, err := s.store.ListJoinTokens(ctx)
	if err != nil {
		return nil, err
	}
	return &persysv1.ListJoinTokensResponse{Tokens: ts}, nil
}

func (s *Service) RevokeJoinToken(ctx context.Context, req *persysv1.RevokeJoinTokenRequest) (*persysv1.RevokeJoinTokenResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	if _, err := s.store.RevokeJoinToken(ctx, req.GetId()); err != nil {
		return nil, err
	}
	s.log.Info("join token revoked", "token_id", req.GetId(), "by", principal.CN(ctx))
	s.events.Add(model.EventJoinTokenRevoked, &persysv1.Event{Actor: principal.CN(ctx), Message: "join token " + req.GetId() + " revoked"})
	return &persysv1.RevokeJoinTokenResponse{}, nil
}

// csrNames takes the subject alternative names an agent asks for, bounded.
func csrNames(csr *x509.CertificateRequest) ([]string, []net.IP, error) {
	if len(csr.DNSNames) > maxCSRNames || len(csr.IPAddresses) > maxCSRNames {
		return nil, nil, fmt.Errorf("csr_pem: more than %d DNS names or IP addresses", maxCSRNames)
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, nil, errors.New("csr_pem: only DNS and IP subject alternative names are allowed")
	}
	return csr.DNSNames, csr.IPAddresses, nil
}

// tokenRefusal explains why a token cannot be used now, or "".
func tokenRefusal(t *persysv1.JoinToken, now time.Time) string {
	switch {
	case t.GetRevoked():
		return fmt.Sprintf("join token %s is revoked", t.GetId())
	case !now.Before(t.GetExpiresAt().AsTime()):
		return fmt.Sprintf("join token %s expired at %s", t.GetId(), t.GetExpiresAt().AsTime().UTC().Format(time.RFC3339))
	case t.GetMaxUses() > 0 && t.GetUses() >= t.GetMaxUses():
		return fmt.Sprintf("join token %s is used up (%d of %d uses)", t.GetId(), t.GetUses(), t.GetMaxUses())
	}
	return ""
}

// heldBy explains who holds node id, or "" when it is free to join.
func (s *Service) heldBy(nodeID string, ni store.NodeIdentity, found bool, now time.Time) string {
	if found {
		if now.After(ni.NotAfter) {
			return ""
		}
		rs := s.revoked
		if at, ok := rs.NodeRevokedAt(nodeID); ok && !ni.IssuedAt.After(at) {
			return ""
		}
		if rs.Revoked(&x509.Certificate{SerialNumber: serialInt(ni.Serial)}) {
			return ""
		}
		return fmt.Sprintf("node id %q is held by a valid certificate (serial %s, until %s); revoke it first (persys ca revoke --node %s)",
			nodeID, ni.Serial, ni.NotAfter.UTC().Format(time.RFC3339), nodeID)
	}
	if s.nodes.NodeAlive(nodeID) {
		return fmt.Sprintf("node id %q is registered and alive under another certificate", nodeID)
	}
	return ""
}

// joinRequest is a JoinNodeRequest checked by parseJoinRequest.
type joinRequest struct {
	tokenID, secret string
	csr             *x509.CertificateRequest
	nodeID          string
	dns             []string
	ips             []net.IP
}

// parseJoinRequest checks everything of a join request that needs no
// store: the token's form and the CSR (signature, key, node id, names).
// The request comes from a caller without a certificate; every error
// names the field.
func parseJoinRequest(req *persysv1.JoinNodeRequest) (joinRequest, error) {
	tid, secret, err := ParseJoinToken(req.GetToken())
	if err != nil {
		return joinRequest{}, err
	}
	csr, err := pki.ParseCSR(req.GetCsrPem())
	if err != nil {
		return joinRequest{}, err
	}
	nodeID := strings.TrimSpace(csr.Subject.CommonName)
	if err := pki.ValidateName("csr common name (node id)", nodeID); err != nil {
		return joinRequest{}, err
	}
	dns, ips, err := csrNames(csr)
	if err != nil {
		return joinRequest{}, err
	}
	return joinRequest{tokenID: tid, secret: secret, csr: csr, nodeID: nodeID, dns: dns, ips: ips}, nil
}

func (s *Service) JoinNode(ctx context.Context, req *persysv1.JoinNodeRequest) (*persysv1.JoinNodeResponse, error) {
	jr, err := parseJoinRequest(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	tid, secret, csr, nodeID, dns, ips := jr.tokenID, jr.secret, jr.csr, jr.nodeID, jr.dns, jr.ips
	ca, bundle, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	validity := s.caConfig().CertValidity
	for range joinCommitTries {
		now := s.now()
		t, rev, match, err := s.store.GetJoinToken(ctx, tid, secret)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !match) {
			s.log.Warn("join refused", "node", nodeID, "token_id", tid, "reason", "unknown token or wrong secret")
			return nil, status.Errorf(codes.Unauthenticated, "token: join token %s is unknown or its secret is wrong", tid)
		}
		if err != nil {
			return nil, err
		}
		if why := tokenRefusal(t, now); why != "" {
			s.log.Warn("join refused", "node", nodeID, "token_id", tid, "reason", why)
			return nil, status.Error(codes.Unauthenticated, "token: "+why)
		}
		ni, niRev, err := s.store.GetNodeIdentity(ctx, nodeID)
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if why := s.heldBy(nodeID, ni, found, now); why != "" {
			s.log.Warn("join refused", "node", nodeID, "token_id", tid, "reason", why)
			return nil, status.Error(codes.AlreadyExists, why)
		}
		if err := waitPastRevocation(ctx, s.revoked, nodeID); err != nil {
			return nil, err
		}
		certPEM, err := ca.SignCSR(csr, pki.IssueRequest{CommonName: nodeID, Role: pki.RoleAgent, DNSNames: dns, IPs: ips, Validity: validity})
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		cert, err := pki.ParseCertPEM(certPEM)
		if err != nil {
			return nil, err
		}
		t.Uses++
		rec := store.NodeIdentity{Serial: cert.SerialNumber.Text(16), IssuedAt: pki.IssuedAt(cert), NotAfter: cert.NotAfter, TokenID: tid}
		err = s.store.CommitJoin(ctx, t, rev, nodeID, niRev, rec)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("node joined", "node", nodeID, "token_id", tid, "serial", rec.Serial, "not_after", cert.NotAfter)
		s.events.Add(model.EventNodeJoined, &persysv1.Event{NodeId: nodeID, Message: "certificate " + rec.Serial + " issued with join token " + tid})
		return &persysv1.JoinNodeResponse{CertificatePem: certPEM, CaBundlePem: bundle, Labels: t.GetLabels()}, nil
	}
	return nil, status.Errorf(codes.Aborted, "join of node %q: token or node identity kept changing; retry", nodeID)
}

func (s *Service) RenewCertificate(ctx context.Context, req *persysv1.RenewCertificateRequest) (*persysv1.RenewCertificateResponse, error) {
	cur := peerCert(ctx)
	if cur == nil {
		return nil, status.Error(codes.Unauthenticated, "renew: a verified client certificate is required")
	}
	who, err := pki.IdentityFromCert(cur)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	csr, err := pki.ParseCSR(req.GetCsrPem())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if cn := strings.TrimSpace(csr.Subject.CommonName); cn != who.CommonName {
		return nil, status.Errorf(codes.PermissionDenied, "csr_pem: common name %q differs from the caller's certificate %q", cn, who.CommonName)
	}
	ca, bundle, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	validity := s.caConfig().CertValidity
	if !who.Role.IsDaemon() {
		// A user's certificate keeps the lifetime it was issued with: a
		// renewal is no way around a short-lived grant.
		validity = min(validity, cur.NotAfter.Sub(pki.IssuedAt(cur)))
	}
	// The names stay those of the current certificate: a renewal never
	// widens what the holder may claim.
	certPEM, err := ca.SignCSR(csr, pki.IssueRequest{CommonName: who.CommonName, Role: who.Role, DNSNames: cur.DNSNames, IPs: cur.IPAddresses, Validity: validity})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	serial := cert.SerialNumber.Text(16)
	if who.Role == pki.RoleAgent {
		if err := s.store.PutNodeIdentity(ctx, who.CommonName, store.NodeIdentity{Serial: serial, IssuedAt: pki.IssuedAt(cert), NotAfter: cert.NotAfter}); err != nil {
			return nil, err
		}
	}
	s.log.Info("certificate renewed", "name", who.CommonName, "role", string(who.Role), "old_serial", who.Serial, "serial", serial, "not_after", cert.NotAfter)
	return &persysv1.RenewCertificateResponse{CertificatePem: certPEM, CaBundlePem: bundle}, nil
}

func (s *Service) RevokeCertificate(ctx context.Context, req *persysv1.RevokeCertificateRequest) (*persysv1.RevokeCertificateResponse, error) {
	n := 0
	for _, v := range []string{req.GetSerial(), req.GetNodeId(), req.GetUser()} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return nil, status.Error(codes.InvalidArgument, "serial, node_id, user: exactly one is required")
	}
	if s := req.GetSerial(); s != "" {
		if len(s) > 40 || serialInt(s) == nil {
			return nil, status.Errorf(codes.InvalidArgument, "serial %q: want a hexadecimal certificate serial of at most 40 digits", s)
		}
	}
	r := &persysv1.Revocation{
		Serial: strings.ToLower(strings.TrimLeft(req.GetSerial(), "0")),
		NodeId: req.GetNodeId(),
		User:   req.GetUser(),
		// The wall clock, as in certificates (see waitPastRevocation).
		RevokedAt: timestamppb.New(time.Now()),
		RevokedBy: principal.CN(ctx),
	}
	if err := s.store.PutRevocation(ctx, r); err != nil {
		return nil, err
	}
	// Act at once here too; the watch brings the same list to every replica.
	list, _, err := s.store.ListRevocations(ctx)
	if err == nil {
		s.applyRevocations(ctx, list)
	}
	s.log.Warn("certificate revoked", "serial", r.GetSerial(), "node", r.GetNodeId(), "user", r.GetUser(), "by", r.GetRevokedBy())
	s.events.Add(model.EventCertificateRevoked, &persysv1.Event{NodeId: r.GetNodeId(), Actor: r.GetRevokedBy(),
		Reason: persysv1.FailureReason_FAILURE_REASON_NODE_REVOKED, Message: revocationText(r)})
	return &persysv1.RevokeCertificateResponse{Revocation: r}, nil
}

func revocationText(r *persysv1.Revocation) string {
	switch {
	case r.GetSerial() != "":
		return "certificate serial " + r.GetSerial() + " revoked"
	case r.GetNodeId() != "":
		return "node " + r.GetNodeId() + " revoked"
	}
	return "user " + r.GetUser() + " revoked"
}

func (s *Service) ListRevocations(ctx context.Context, _ *persysv1.ListRevocationsRequest) (*persysv1.ListRevocationsResponse, error) {
	list, _, err := s.store.ListRevocations(ctx)
	if err != nil {
		return nil, err
	}
	return &persysv1.ListRevocationsResponse{Revocations: list}, nil
}

// waitPastRevocation waits, when node id was revoked within the current
// second, until that second is over. Certificates carry whole seconds, and
// a certificate whose issuance second is not after the revocation counts as
// revoked (pki.RevocationSet), so a node that joins again at once would get
// a certificate that is already refused.
func waitPastRevocation(ctx context.Context, rs *pki.RevocationSet, nodeID string) error {
	at, ok := rs.NodeRevokedAt(nodeID)
	if !ok {
		return nil
	}
	wait := time.Until(at.Truncate(time.Second).Add(time.Second))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// serialInt parses a hexadecimal serial; nil when it is not one or zero.
func serialInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil
	}
	return n
}
