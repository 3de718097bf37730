package identity

// Users: client certificates for people (signed from a CSR, with a role),
// API tokens, and the audit log the gateway writes to.
//
// An API token is "psy_<id>_<secret>": the id is public (it names the token
// in listings and revocations), the secret is 32 random bytes. etcd keeps
// the token's info and the SHA-256 of the whole token, never the token;
// AuthenticateToken hashes what it is given and compares in constant time.
// Tokens are shown once, by CreateAPIToken, and never logged.
//
// Audit events are ordinary events of type Audit with actor, action and
// result, stored synchronously with a retention of their own
// (Config.AuditRetention, default 720h): a failure to store one reaches the
// caller, which must not drop it silently.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// Limits and defaults of the user calls.
const (
	// APITokenPrefix starts every API token.
	APITokenPrefix = "psy_"
	// DefaultAPITokenTTL is a token's lifetime when the request names none.
	DefaultAPITokenTTL = 30 * 24 * time.Hour
	// MaxAPITokenTTL bounds a token's lifetime.
	MaxAPITokenTTL = 365 * 24 * time.Hour
	// DefaultUserCertTTL is a user certificate's lifetime when the request
	// names none; MaxUserCertTTL bounds it.
	DefaultUserCertTTL = 90 * 24 * time.Hour
	MaxUserCertTTL     = 365 * 24 * time.Hour

	apiTokenIDBytes     = 6
	apiTokenSecretBytes = 32
	// maxAPITokenLen bounds what AuthenticateToken reads.
	maxAPITokenLen = 256
	revokeTries    = 5
)

// userRoles are the roles a user certificate or an API token may carry.
var userRoles = []pki.Role{pki.RoleAdmin, pki.RoleOperator, pki.RoleViewer}

func parseUserRole(field, s string) (pki.Role, error) {
	for _, r := range userRoles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", status.Errorf(codes.InvalidArgument, "%s: must be admin, operator or viewer, got %q", field, s)
}

// ttlFrom reads a ttl_seconds field: 0 means def, otherwise 1 s to limit.
func ttlFrom(field string, secs int64, def, limit time.Duration) (time.Duration, error) {
	if secs == 0 {
		return def, nil
	}
	if secs < 0 || secs > int64(limit/time.Second) {
		return 0, status.Errorf(codes.InvalidArgument, "%s: must be between 1 and %d (%s), got %d", field, int64(limit/time.Second), limit, secs)
	}
	return time.Duration(secs) * time.Second, nil
}

func (s *Service) IssueUserCertificate(ctx context.Context, req *persysv1.IssueUserCertificateRequest) (*persysv1.IssueUserCertificateResponse, error) {
	if err := pki.ValidateName("name", req.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	role, err := parseUserRole("role", req.GetRole())
	if err != nil {
		return nil, err
	}
	ttl, err := ttlFrom("ttl_seconds", req.GetTtlSeconds(), DefaultUserCertTTL, MaxUserCertTTL)
	if err != nil {
		return nil, err
	}
	if len(req.GetCsrPem()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "csr_pem: required (the key stays with the user: send a certificate request)")
	}
	csr, err := pki.ParseCSR(req.GetCsrPem())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr_pem: %v", err)
	}
	ca, bundle, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.SignCSR(csr, pki.IssueRequest{CommonName: req.GetName(), Role: role, Validity: ttl})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sign: %v", err)
	}
	s.log.Info("user certificate issued", "user", req.GetName(), "role", role, "ttl", ttl.String(), "by", principal.CN(ctx))
	s.events.Add(model.EventUserCertificateIssued, &persysv1.Event{Actor: principal.CN(ctx),
		Message: fmt.Sprintf("certificate for user %s with role %s, valid %s", req.GetName(), role, ttl)})
	return &persysv1.IssueUserCertificateResponse{CertificatePem: certPEM, CaBundlePem: bundle}, nil
}

// newAPIToken returns a fresh token and its id.
func newAPIToken() (token, id string, err error) {
	b := make([]byte, apiTokenIDBytes+apiTokenSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("api token: random: %w", err)
	}
	id = hex.EncodeToString(b[:apiTokenIDBytes])
	return APITokenPrefix + id + "_" + hex.EncodeToString(b[apiTokenIDBytes:]), id, nil
}

// ParseAPITokenID returns the id part of a token of the form
// psy_<id>_<secret>, and false when tok does not have that form.
func ParseAPITokenID(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, APITokenPrefix)
	if !ok || len(tok) > maxAPITokenLen {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*apiTokenIDBytes || len(secret) != 2*apiTokenSecretBytes {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", false
	}
	if _, err := hex.DecodeString(secret); err != nil {
		return "", false
	}
	return id, true
}

func (s *Service) CreateAPIToken(ctx context.Context, req *persysv1.CreateAPITokenRequest) (*persysv1.CreateAPITokenResponse, error) {
	if err := pki.ValidateName("user", req.GetUser()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	role, err := parseUserRole("role", req.GetRole())
	if err != nil {
		return nil, err
	}
	ttl, err := ttlFrom("ttl_seconds", req.GetTtlSeconds(), DefaultAPITokenTTL, MaxAPITokenTTL)
	if err != nil {
		return nil, err
	}
	now := s.now()
	for range 3 {
		tok, id, err := newAPIToken()
		if err != nil {
			return nil, err
		}
		info := &persysv1.APIToken{Id: id, User: req.GetUser(), Role: string(role),
			CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(ttl)), CreatedBy: principal.CN(ctx)}
		sum := sha256.Sum256([]byte(tok))
		err = s.store.CreateAPIToken(ctx, info, sum[:])
		if errors.Is(err, store.ErrExists) {
			continue // an id collision: draw again
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("api token created", "token_id", id, "user", info.GetUser(), "role", role,
			"expires", info.GetExpiresAt().AsTime().Format(time.RFC3339), "by", principal.CN(ctx))
		s.events.Add(model.EventAPITokenCreated, &persysv1.Event{Actor: principal.CN(ctx),
			Message: fmt.Sprintf("api token %s for user %s with role %s", id, info.GetUser(), role)})
		return &persysv1.CreateAPITokenResponse{Token: tok, Info: info}, nil
	}
	return nil, status.Error(codes.Aborted, "api token: no free id after 3 draws; try again")
}

func (s *Service) ListAPITokens(ctx context.Context, _ *persysv1.ListAPITokensRequest) (*persysv1.ListAPITokensResponse, error) {
	list, err := s.store.ListAPITokens(ctx)
	if err != nil {
		return nil, err
	}
	return &persysv1.ListAPITokensResponse{Tokens: list}, nil
}

func (s *Service) RevokeAPIToken(ctx context.Context, req *persysv1.RevokeAPITokenRequest) (*persysv1.RevokeAPITokenResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	for range revokeTries {
		info, _, rev, err := s.store.GetAPIToken(ctx, id)
		if errors.Is(err, store.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "id: %v", err)
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "api token %q not found", id)
		}
		if err != nil {
			return nil, err
		}
		if info.GetRevoked() {
			return &persysv1.RevokeAPITokenResponse{}, nil
		}
		_, err = s.store.RevokeAPIToken(ctx, id, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("api token revoked", "token_id", id, "user", info.GetUser(), "by", principal.CN(ctx))
		s.events.Add(model.EventAPITokenRevoked, &persysv1.Event{Actor: principal.CN(ctx),
			Message: fmt.Sprintf("api token %s of user %s revoked", id, info.GetUser())})
		return &persysv1.RevokeAPITokenResponse{}, nil
	}
	return nil, status.Errorf(codes.Aborted, "revoke api token %s: too many concurrent changes", id)
}

// errBadToken is the one answer for a token that is malformed, unknown or
// has the wrong secret: which of them is not told.
var errBadToken = status.Error(codes.Unauthenticated, "api token is not valid")

func (s *Service) AuthenticateToken(ctx context.Context, req *persysv1.AuthenticateTokenRequest) (*persysv1.AuthenticateTokenResponse, error) {
	tok := req.GetToken()
	id, ok := ParseAPITokenID(tok)
	if !ok {
		return nil, errBadToken
	}
	info, hash, _, err := s.store.GetAPIToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, err
	}
	if info.GetRevoked() {
		return nil, status.Errorf(codes.Unauthenticated, "api token %s was revoked", id)
	}
	sum := sha256.Sum256([]byte(tok))
	if len(hash) != len(sum) || subtle.ConstantTimeCompare(hash, sum[:]) != 1 {
		return nil, errBadToken
	}
	if exp := info.GetExpiresAt(); exp != nil && !s.now().Before(exp.AsTime()) {
		return nil, status.Errorf(codes.Unauthenticated, "api token %s expired at %s", id, exp.AsTime().UTC().Format(time.RFC3339))
	}
	if _, err := parseUserRole("role", info.GetRole()); err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "api token %s carries no usable role", id)
	}
	return &persysv1.AuthenticateTokenResponse{User: info.GetUser(), Role: info.GetRole(), TokenId: id}, nil
}

func (s *Service) RecordAudit(ctx context.Context, req *persysv1.RecordAuditRequest) (*persysv1.RecordAuditResponse, error) {
	ev := req.GetEvent()
	if ev == nil {
		return nil, status.Error(codes.InvalidArgument, "event: required")
	}
	if err := store.ValidateAuditEvent(ev); err != nil {
		return nil, status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), "store: "))
	}
	ev = proto.CloneOf(ev)
	if ev.GetTime() == nil {
		ev.Time = timestamppb.New(s.now())
	}
	if err := s.audit.Append(ctx, ev); err != nil {
		s.log.Error("audit event not stored", "actor", ev.GetActor(), "action", ev.GetAction(), "result", ev.GetResult(), "err", err)
		if errors.Is(err, store.ErrInvalid) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Errorf(codes.Unavailable, "audit event not stored: %v", err)
	}
	return &persysv1.RecordAuditResponse{}, nil
}
