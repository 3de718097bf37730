// Package member owns the federation's side of one member cluster: it
// checks a join request at the boundary (name, gateway URL, the member's
// CA, and the identity the member issued to the federation), builds a
// gateway client that presents that identity and trusts only that CA,
// and probes the member's gateway for its cluster summary. Errors a
// caller shows name the join field at fault, as httperr field errors.
package member

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/health"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// maxNameLen keeps a cluster name usable as a DNS label and a label value.
const maxNameLen = 63

// ValidateName checks a cluster name: a DNS label (lowercase letters,
// digits and '-', starting with a letter, at most 63 characters).
func ValidateName(field, name string) error {
	if name == "" {
		return httperr.Field(field, "required")
	}
	if len(name) > maxNameLen {
		return httperr.Field(field, fmt.Sprintf("%q is longer than %d characters", name, maxNameLen))
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-')
		if !ok || (i == len(name)-1 && c == '-') {
			return httperr.Field(field, fmt.Sprintf("%q must be a DNS label: lowercase letters, digits and '-', starting with a letter and not ending with '-'", name))
		}
	}
	return nil
}

var (
	labelKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
)

// ValidateLabels checks a member's labels: keys of the form [prefix/]name
// and values of letters, digits, '-', '_' and '.', each at most 63
// characters (the prefix: at most 253), named field.KEY when invalid.
func ValidateLabels(field string, labels map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if i > 253 {
				return httperr.Field(field+"."+k, "the key's prefix is longer than 253 characters")
			}
			name = k[i+1:]
		}
		if len(name) > maxNameLen || !labelKey.MatchString(k) {
			return httperr.Field(field+"."+k, fmt.Sprintf("%q is not a label key: [prefix/]name, the name of at most 63 letters, digits, '-', '_' or '.'", k))
		}
		if len(v) > maxNameLen || !labelValue.MatchString(v) {
			return httperr.Field(field+"."+k, fmt.Sprintf("%q is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v))
		}
	}
	return nil
}

// Identity is a parsed join request: what the federation presents to
// the member and what it trusts.
type Identity struct {
	Gateway  string
	Roots    *x509.CertPool
	Pair     tls.Certificate
	Leaf     *x509.Certificate
	Identity pki.Identity
}

// Parse checks every field of a join request that can be checked without
// the network, at time now, and names the first invalid field.
func Parse(req fedapi.JoinRequest, now time.Time) (*Identity, error) {
	if err := ValidateName("name", req.Name); err != nil {
		return nil, err
	}
	if err := ValidateLabels("labels", req.Labels); err != nil {
		return nil, err
	}
	if err := validateGateway(req.Gateway); err != nil {
		return nil, err
	}
	roots, err := parseCA(req.CA)
	if err != nil {
		return nil, err
	}
	pair, leaf, err := parseIdentity(req.Cert, req.Key, now)
	if err != nil {
		return nil, err
	}
	id, err := pki.IdentityFromCert(leaf)
	if err != nil {
		return nil, httperr.Field("cert", err.Error())
	}
	if id.Role.IsDaemon() {
		return nil, httperr.Field("cert", fmt.Sprintf("role %q is a daemon role: have the member issue a user identity (operator) for the federation", id.Role))
	}
	return &Identity{Gateway: strings.TrimSuffix(req.Gateway, "/"), Roots: roots, Pair: pair, Leaf: leaf, Identity: id}, nil
}

func validateGateway(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return httperr.Field("gateway", "required (the member gateway's https:// URL)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return httperr.Field("gateway", err.Error())
	}
	if u.Scheme != "https" || u.Host == "" {
		return httperr.Field("gateway", fmt.Sprintf("%q must be an https:// URL with a host", raw))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return httperr.Field("gateway", fmt.Sprintf("%q must be scheme and host only (no path, query, fragment or user)", raw))
	}
	return nil
}

func parseCA(pemText string) (*x509.CertPool, error) {
	if strings.TrimSpace(pemText) == "" {
		return nil, httperr.Field("ca", "required (the member's CA bundle, PEM)")
	}
	certs, err := pki.ParseCertsPEM([]byte(pemText))
	if err != nil {
		return nil, httperr.Field("ca", err.Error())
	}
	if len(certs) == 0 {
		return nil, httperr.Field("ca", "no certificate in the PEM text")
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func parseIdentity(certPEM, keyPEM string, now time.Time) (tls.Certificate, *x509.Certificate, error) {
	if strings.TrimSpace(certPEM) == "" {
		return tls.Certificate{}, nil, httperr.Field("cert", "required (the identity the member issued to the federation, PEM)")
	}
	if strings.TrimSpace(keyPEM) == "" {
		return tls.Certificate{}, nil, httperr.Field("key", "required (the private key of cert, PEM)")
	}
	leaf, err := pki.ParseCertPEM([]byte(certPEM))
	if err != nil {
		return tls.Certificate{}, nil, httperr.Field("cert", err.Error())
	}
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, nil, httperr.Field("cert", fmt.Sprintf("expired at %s: have the member issue a new identity", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, nil, httperr.Field("cert", fmt.Sprintf("not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return tls.Certificate{}, nil, httperr.Field("key", err.Error())
	}
	return pair, leaf, nil
}

// Client returns a gateway client for the member that presents the
// federation's identity and trusts only the member's CA.
func (id *Identity) Client() (*client.Client, error) {
	return client.NewWithTLS(id.Gateway, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      id.Roots,
		Certificates: []tls.Certificate{id.Pair},
	})
}

// StandaloneLeader is the leader shown for a member whose one scheduler
// holds no election.
const StandaloneLeader = "standalone"

// Probe asks the member's gateway for its cluster summary (and, when the
// summary names no leader, who leads).
func Probe(ctx context.Context, c *client.Client) (health.Summary, error) {
	s, err := c.Summary(ctx)
	if err != nil {
		return health.Summary{}, err
	}
	leader := s.GetLeader()
	if leader == "" {
		// A scheduler without election (one replica on an embedded
		// etcd) names no leader address; it leads by itself.
		if info, err := c.Leader(ctx); err == nil && info.GetIsLeader() && info.GetAddress() == "" {
			leader = StandaloneLeader
		}
	}
	return health.Summary{
		Leader:     leader,
		NodesTotal: s.GetNodesTotal(), NodesReady: s.GetNodesReady(), Workloads: s.GetWorkloadsTotal(),
		CPUCapacityMillis: s.GetCapacity().GetCpuMillis(), CPUAllocatedMillis: s.GetAllocated().GetCpuMillis(),
		MemoryCapacityBytes: s.GetCapacity().GetMemoryBytes(), MemoryAllocatedBytes: s.GetAllocated().GetMemoryBytes(),
	}, nil
}

// Check probes the member once with the join's identity and turns a
// failure into an error naming the join field at fault: ca when the
// gateway's certificate does not verify against it, cert when the member
// refuses the identity, gateway when it cannot be reached.
func Check(ctx context.Context, id *Identity) (health.Summary, error) {
	if err := id.handshake(ctx); err != nil {
		return health.Summary{}, Classify(err)
	}
	c, err := id.Client()
	if err != nil {
		return health.Summary{}, httperr.Field("gateway", err.Error())
	}
	defer c.Close()
	s, err := Probe(ctx, c)
	if err != nil {
		return health.Summary{}, Classify(err)
	}
	return s, nil
}

// Classify names the join field a failed probe points at.
func Classify(err error) error {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		oerr *net.OpError
		aerr *client.APIError
	)
	switch {
	case errors.As(err, &herr):
		return httperr.Field("gateway", "the gateway's certificate is not valid for this host: "+herr.Error())
	case errors.As(err, &verr), errors.As(err, &uerr):
		return httperr.Field("ca", "the member gateway's certificate does not verify against this CA: "+err.Error())
	case errors.As(err, &oerr) && oerr.Op == "remote error":
		// A TLS alert from the gateway: it refused the certificate.
		return httperr.Field("cert", "the member gateway refused this identity (not issued by its CA, expired or revoked): "+err.Error())
	case errors.As(err, &aerr) && (aerr.Code == http.StatusUnauthorized || aerr.Code == http.StatusForbidden):
		return httperr.Field("cert", "the member gateway refused this identity: "+aerr.Message)
	case errors.As(err, &aerr):
		return httperr.New(http.StatusBadGateway, "the member gateway answered "+aerr.Error())
	}
	return httperr.Field("gateway", "cannot reach the member gateway: "+err.Error())
}

// handshake opens one HTTP/1.1 connection and reads the first answer.
// Under TLS 1.3 a server refuses a client certificate only after the
// client's side of the handshake is done, as an alert on the first read;
// the HTTP/2 client reports that as a connection it could not make, so
// the refusal is read here, where the alert keeps its type.
func (id *Identity) handshake(ctx context.Context) error {
	u, err := url.Parse(id.Gateway)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: id.Roots, Certificates: []tls.Certificate{id.Pair},
		ServerName: u.Hostname(), NextProtos: []string{"http/1.1"},
	}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "GET /v1/version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Host); err != nil {
		return err
	}
	var buf [1]byte
	_, err = conn.Read(buf[:])
	return err
}
