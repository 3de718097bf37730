package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cenkalti/backoff/v5"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
)

// identityDir is the folder under the agent's data dir holding the identity
// it obtained by joining: ca.crt (the trusted bundle), agent.crt,
// agent.key (0600, made on this node and never sent anywhere) and labels
// (k=v lines, the join token's labels).
const identityDir = "pki"

// IdentityFiles returns where a joined agent keeps its identity in dataDir.
func IdentityFiles(dataDir string) pki.Files {
	d := filepath.Join(dataDir, identityDir)
	return pki.Files{CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "agent.crt"), Key: filepath.Join(d, "agent.key")}
}

// HasIdentity reports whether dataDir holds a certificate from a join.
func HasIdentity(dataDir string) bool {
	_, err := os.Stat(IdentityFiles(dataDir).Cert)
	return err == nil
}

// JoinConfig describes one join.
type JoinConfig struct {
	// Schedulers are host:port addresses, tried in order.
	Schedulers []string
	// Token is the join token "<id>.<secret>"; CAHash pins the cluster CA
	// ("sha256:<hex>" of its public key).
	Token, CAHash string
	// NodeID becomes the certificate's common name.
	NodeID string
	// DataDir receives the identity (see IdentityFiles).
	DataDir string
	// DNSNames and IPs are the names the scheduler dials this agent at
	// (subject alternative names of its server certificate).
	DNSNames []string
	IPs      []net.IP
	Logger   *slog.Logger
	// Timeout bounds each attempt (default 30s).
	Timeout time.Duration
	// RetryFor keeps retrying, with backoff, while no scheduler answers
	// (not when one refuses, nor on a CA hash mismatch); zero tries once.
	RetryFor time.Duration
}

// ErrJoinRefused wraps a scheduler's refusal of a join (bad token, node id
// held, bad request); retrying does not help.
var ErrJoinRefused = errors.New("join refused")

// Join obtains the node's identity with a join token: it makes a P-256 key
// here, sends a CSR for NodeID to a scheduler whose certificate verifies
// against the CA pinned by CAHash (nothing is sent to any other server),
// checks the answer and writes the identity to DataDir. It returns the
// identity files and the labels the token carries.
func Join(ctx context.Context, cfg JoinConfig) (pki.Files, map[string]string, error) {
	if err := pki.ValidateCAHash(cfg.CAHash); err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: --ca-hash: %w", err)
	}
	if cfg.Token == "" {
		return pki.Files{}, nil, errors.New("join: token: required")
	}
	if err := pki.ValidateName("node id", cfg.NodeID); err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	if len(cfg.Schedulers) == 0 {
		return pki.Files{}, nil, errors.New("join: scheduler address: required")
	}
	if cfg.DataDir == "" {
		return pki.Files{}, nil, errors.New("join: data dir: required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, err := pki.NewKey()
	if err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	csrPEM, err := newAgentCSR(cfg.NodeID, cfg.DNSNames, cfg.IPs, key)
	if err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	resp, err := joinRetrying(ctx, cfg, csrPEM, log)
	if err != nil {
		return pki.Files{}, nil, err
	}

	// Check the answer before keeping it.
	cert, err := pki.ParseCertPEM(resp.GetCertificatePem())
	if err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: scheduler's certificate: %w", err)
	}
	id, err := pki.IdentityFromCert(cert)
	if err != nil || id.CommonName != cfg.NodeID || id.Role != pki.RoleAgent {
		return pki.Files{}, nil, fmt.Errorf("join: scheduler returned a certificate for %q role %s (%v), want %q role agent", id.CommonName, id.Role, err, cfg.NodeID)
	}
	pinned := false
	roots, err := pki.ParseCertsPEM(resp.GetCaBundlePem())
	if err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: scheduler's CA bundle: %w", err)
	}
	for _, c := range roots {
		pinned = pinned || (c.IsCA && pki.HashCert(c) == cfg.CAHash)
	}
	if !pinned {
		return pki.Files{}, nil, fmt.Errorf("join: the returned CA bundle does not hold the pinned CA %s", cfg.CAHash)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	files := IdentityFiles(cfg.DataDir)
	if err := os.MkdirAll(filepath.Dir(files.Cert), 0o700); err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	if err := writeIdentity(files, resp.GetCertificatePem(), keyPEM, resp.GetCaBundlePem(), resp.GetLabels()); err != nil {
		return pki.Files{}, nil, fmt.Errorf("join: %w", err)
	}
	log.Info("joined the cluster", "node", cfg.NodeID, "serial", id.Serial, "expires", cert.NotAfter, "labels", len(resp.GetLabels()))
	return files, resp.GetLabels(), nil
}

// joinRetrying tries the schedulers in turn until one answers, retrying
// with jittered backoff for cfg.RetryFor while none does (nodes joining
// together then do not retry together). A refusal ends it at once.
func joinRetrying(ctx context.Context, cfg JoinConfig, csrPEM []byte, log *slog.Logger) (*persysv1.JoinNodeResponse, error) {
	deadline := time.Now().Add(cfg.RetryFor)
	retry := backoff.ExponentialBackOff{InitialInterval: time.Second, RandomizationFactor: retryJitter, Multiplier: 2, MaxInterval: 12 * time.Second}
	for {
		resp, refused, err := joinAny(ctx, cfg, csrPEM)
		if err == nil {
			return resp, nil
		}
		wait := retry.NextBackOff()
		if refused || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		log.Warn("join failed; retrying", "node", cfg.NodeID, "retry_in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("join: %w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// joinAny tries each scheduler once, in order, and stops at the first
// answer or refusal.
func joinAny(ctx context.Context, cfg JoinConfig, csrPEM []byte) (resp *persysv1.JoinNodeResponse, refused bool, err error) {
	var errs []error
	for _, addr := range cfg.Schedulers {
		resp, err := joinAt(ctx, addr, cfg, csrPEM)
		if err == nil {
			return resp, false, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if errors.Is(err, ErrJoinRefused) {
			refused = true
			break
		}
	}
	return nil, refused, fmt.Errorf("join: %w", errors.Join(errs...))
}

func newAgentCSR(nodeID string, dns []string, ips []net.IP, key *ecdsa.PrivateKey) ([]byte, error) {
	return pki.NewServerCSR(nodeID, dns, ips, key)
}

// joinAt sends the join to one scheduler over TLS pinned to the CA hash.
func joinAt(ctx context.Context, addr string, cfg JoinConfig, csrPEM []byte) (*persysv1.JoinNodeResponse, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	tlsCfg, err := pki.PinnedClientTLS(cfg.CAHash, host)
	if err != nil {
		return nil, err
	}
	// A server that fails the pin is a refusal, not an outage.
	var pinMu sync.Mutex
	var pinErr error
	verify := tlsCfg.VerifyConnection
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			pinMu.Lock()
			pinErr = err
			pinMu.Unlock()
		}
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	resp, err := persysv1grpc.NewControlServiceClient(conn).JoinNode(ctx, &persysv1.JoinNodeRequest{Token: cfg.Token, CsrPem: csrPEM}, grpc.WaitForReady(false))
	if err != nil {
		pinMu.Lock()
		perr := pinErr
		pinMu.Unlock()
		if perr != nil {
			return nil, fmt.Errorf("%w: %w", ErrJoinRefused, perr)
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.Unauthenticated, codes.AlreadyExists, codes.PermissionDenied:
			return nil, fmt.Errorf("%w: %s", ErrJoinRefused, status.Convert(err).Message())
		}
		return nil, err
	}
	return resp, nil
}

func writeIdentity(f pki.Files, certPEM, keyPEM, bundlePEM []byte, labels map[string]string) error {
	var b bytes.Buffer
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, labels[k])
	}
	dir := filepath.Dir(f.Cert)
	if err := os.WriteFile(filepath.Join(dir, "labels"), b.Bytes(), 0o644); err != nil {
		return err
	}
	// The holder checks the identity and writes key, certificate and
	// bundle, each atomically.
	_, err := pki.NewHolderFiles(f, certPEM, keyPEM, bundlePEM)
	return err
}

// JoinLabels returns the labels of the token the agent joined with.
func JoinLabels(dataDir string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, identityDir, "labels"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k != "" {
			out[k] = v
		}
	}
	return out, sc.Err()
}
