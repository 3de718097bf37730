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
	// DefaultConsoleSessionTTL and MaxConsoleSessionTTL are a console
	// session token's lifetime when the login names none, and its bound.
	DefaultConsoleSessionTTL = 30 * time.Minute
	MaxConsoleSessionTTL     = time.Hour
	// consoleSessionKept is how long a console session token stays listed
	// after it expired; then etcd deletes it (one per login adds up).
	consoleSessionKept = 10 * time.Minute
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
	return s.createToken(ctx, req.GetUser(), role, s.now(), ttl, principal.CN(ctx), 0)
}

// consoleSessionMark starts the created_by of a console session token;
// the id of the token its login used follows.
const consoleSessionMark = "console-session:"

// ConsoleSessionOf reports whether info is a console session token, and
// the id of the API token its login used.
func ConsoleSessionOf(info *persysv1.APIToken) (loginToken string, ok bool) {
	return strings.CutPrefix(info.GetCreatedBy(), consoleSessionMark)
}

// CreateConsoleSession issues the token of a console login: for p itself,
// with p's own role, made from p's valid API token loginTokenID, living
// at most MaxConsoleSessionTTL and never past that token. The request's
// user and role must be p's (a login never widens what its caller may
// do); revoking the login token revokes the session (RevokeAPIToken).
func (s *Service) CreateConsoleSession(ctx context.Context, p principal.Principal, loginTokenID string, req *persysv1.CreateAPITokenRequest) (*persysv1.CreateAPITokenResponse, error) {
	if req.GetUser() != p.Name {
		return nil, status.Errorf(codes.PermissionDenied, "user: a console session is for its caller %q only, got %q", p.Name, req.GetUser())
	}
	if req.GetRole() != string(p.Role) {
		return nil, status.Errorf(codes.PermissionDenied, "role: a console session carries its caller's role %q, got %q", p.Role, req.GetRole())
	}
	role, err := parseUserRole("role", req.GetRole())
	if err != nil {
		return nil, err
	}
	if err := pki.ValidateName("user", p.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ttl, err := ttlFrom("ttl_seconds", req.GetTtlSeconds(), DefaultConsoleSessionTTL, MaxConsoleSessionTTL)
	if err != nil {
		return nil, err
	}
	if loginTokenID == "" {
		return nil, status.Error(codes.PermissionDenied, "a console session is made from an API token: none was named")
	}
	login, _, _, err := s.store.GetAPIToken(ctx, loginTokenID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil, status.Errorf(codes.PermissionDenied, "login token %q: not found", loginTokenID)
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	left := login.GetExpiresAt().AsTime().Sub(now)
	if login.GetRevoked() || left <= 0 || login.GetUser() != p.Name || login.GetRole() != string(p.Role) {
		return nil, status.Errorf(codes.PermissionDenied, "login token %s is not a valid token of %s", loginTokenID, p)
	}
	if _, nested := ConsoleSessionOf(login); nested {
		return nil, status.Errorf(codes.PermissionDenied, "login token %s is itself a console session: log in with an API token", loginTokenID)
	}
	ttl = min(ttl, left)
	return s.createToken(ctx, p.Name, role, now, ttl, consoleSessionMark+loginTokenID, ttl+consoleSessionKept)
}

// createToken stores a new token created at now; keep > 0 has etcd
// delete it that long after its creation.
func (s *Service) createToken(ctx context.Context, user string, role pki.Role, now time.Time, ttl time.Duration, createdBy string, keep time.Duration) (*persysv1.CreateAPITokenResponse, error) {
	for range 3 {
		tok, id, err := newAPIToken()
		if err != nil {
			return nil, err
		}
		info := &persysv1.APIToken{Id: id, User: user, Role: string(role),
			CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(ttl)), CreatedBy: createdBy}
		sum := sha256.Sum256([]byte(tok))
		if keep > 0 {
			err = s.store.CreateExpiringAPIToken(ctx, info, sum[:], keep)
		} else {
			err = s.store.CreateAPIToken(ctx, info, sum[:])
		}
		if errors.Is(err, store.ErrExists) {
			continue // an id collision: draw again
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("api token created", "token_id", id, "user", user, "role", role,
			"expires", info.GetExpiresAt().AsTime().Format(time.RFC3339), "by", createdBy)
		what := "api token"
		if strings.HasPrefix(createdBy, consoleSessionMark) {
			what = "console session token"
		}
		s.events.Add(model.EventAPITokenCreated, &persysv1.Event{Actor: principal.CN(ctx),
			Message: fmt.Sprintf("%s %s for user %s with role %s", what, id, user, role)})
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
	resp, err := s.revokeToken(ctx, req.GetId(), nil)
	if err != nil {
		return nil, err
	}
	return resp, s.revokeSessionsOf(ctx, req.GetId())
}

// revokeSessionsOf revokes the live console sessions made with the API
// token id, so that revoking a token logs its browsers out.
func (s *Service) revokeSessionsOf(ctx context.Context, id string) error {
	list, err := s.store.ListAPITokens(ctx)
	if err != nil {
		return fmt.Errorf("api token %s revoked, its console sessions not: %w", id, err)
	}
	for _, t := range list {
		if login, ok := ConsoleSessionOf(t); ok && login == id && !t.GetRevoked() {
			if _, err := s.revokeToken(ctx, t.GetId(), nil); err != nil && status.Code(err) != codes.NotFound {
				return fmt.Errorf("api token %s revoked, its console session %s not: %w", id, t.GetId(), err)
			}
		}
	}
	return nil
}

// RevokeConsoleSession ends a console session of p's own: a token that
// CreateConsoleSession issued to p.
func (s *Service) RevokeConsoleSession(ctx context.Context, p principal.Principal, req *persysv1.RevokeAPITokenRequest) (*persysv1.RevokeAPITokenResponse, error) {
	return s.revokeToken(ctx, req.GetId(), func(info *persysv1.APIToken) error {
		if _, ok := ConsoleSessionOf(info); !ok || info.GetUser() != p.Name {
			return status.Errorf(codes.PermissionDenied, "id: api token %s is not a console session of %s", info.GetId(), p)
		}
		return nil
	})
}

// revokeToken revokes the token with id once may (nil: anyone who got
// here) admits it.
func (s *Service) revokeToken(ctx context.Context, id string, may func(*persysv1.APIToken) error) (*persysv1.RevokeAPITokenResponse, error) {
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
		if may != nil {
			if err := may(info); err != nil {
				return nil, err
			}
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
