package pki

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
)

// BootstrapCAName is the common name of a CA created by Bootstrap.
const BootstrapCAName = "Persys Compute CA"

// Bundle lists the files of a cluster laid out by Bootstrap. Agents is keyed
// by node id.
type Bundle struct {
	Dir                       string
	CA                        string
	Scheduler, Gateway, Admin Files
	Agents                    map[string]Files
	// ClusterID is the CA's cluster id (see EnsureClusterID).
	ClusterID string
}

// Bootstrap lays out every identity of a cluster in dir. It reuses the CA in
// dir when dir/ca.crt exists and creates one otherwise, then issues, when
// missing, scheduler.crt/key, gateway.crt/key, agent-<node id>.crt/key for
// each node id (common name: the node id) and admin.crt/key (role admin,
// common name "admin"). Daemon certificates are valid for DNS "localhost",
// "scheduler", "gateway", the extra names, IP 127.0.0.1, ::1 and the extra
// IPs; an agent's also for its node id when that is a valid host name.
//
// An existing identity is kept only if it verifies against the CA, matches
// its key, carries the expected common name and role and covers the wanted
// names; otherwise it is issued again. Calling Bootstrap twice is therefore
// cheap and keeps the CA.
func Bootstrap(dir string, nodeIDs []string, extraDNS []string, extraIPs []net.IP) (*Bundle, error) {
	if dir == "" {
		return nil, fmt.Errorf("bootstrap: dir: %w: empty", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, id := range nodeIDs {
		if err := ValidateName("node id", id); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		if seen[id] {
			return nil, fmt.Errorf("bootstrap: node id %q: %w: duplicate", id, ErrInvalid)
		}
		seen[id] = true
	}
	for i, d := range extraDNS {
		if err := validateDNSName(d); err != nil {
			return nil, fmt.Errorf("bootstrap: extra dns name %d: %w", i, err)
		}
	}
	for i, ip := range extraIPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, fmt.Errorf("bootstrap: extra ip %d: %w: not an IPv4 or IPv6 address", i, ErrInvalid)
		}
	}

	ca, err := openOrInitCA(dir)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	clusterID, err := EnsureClusterID(dir)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	caPath := filepath.Join(dir, CACertFile)
	dns := dedupe(append([]string{"localhost", "scheduler", "gateway"}, extraDNS...))
	ips := dedupeIPs(append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, extraIPs...))

	b := &Bundle{Dir: dir, CA: caPath, Agents: make(map[string]Files, len(nodeIDs)), ClusterID: clusterID}
	ensure := func(name string, req IssueRequest) (Files, error) {
		f := Files{CA: caPath, Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
		if ca.current(f, req) {
			return f, nil
		}
		certPEM, keyPEM, err := ca.Issue(req)
		if err != nil {
			return Files{}, err
		}
		if err := WriteIdentity(dir, name, certPEM, keyPEM); err != nil {
			return Files{}, err
		}
		return f, nil
	}
	if b.Scheduler, err = ensure("scheduler", IssueRequest{CommonName: "scheduler", Role: RoleScheduler, DNSNames: dns, IPs: ips}); err != nil {
		return nil, fmt.Errorf("bootstrap: scheduler: %w", err)
	}
	if b.Gateway, err = ensure("gateway", IssueRequest{CommonName: "gateway", Role: RoleGateway, DNSNames: dns, IPs: ips}); err != nil {
		return nil, fmt.Errorf("bootstrap: gateway: %w", err)
	}
	for _, id := range nodeIDs {
		agentDNS := dns
		if validateDNSName(id) == nil {
			agentDNS = dedupe(append(slices.Clone(dns), id))
		}
		f, err := ensure("agent-"+id, IssueRequest{CommonName: id, Role: RoleAgent, DNSNames: agentDNS, IPs: ips})
		if err != nil {
			return nil, fmt.Errorf("bootstrap: agent %q: %w", id, err)
		}
		b.Agents[id] = f
	}
	if b.Admin, err = ensure("admin", IssueRequest{CommonName: "admin", Role: RoleAdmin}); err != nil {
		return nil, fmt.Errorf("bootstrap: admin: %w", err)
	}
	return b, nil
}

func openOrInitCA(dir string) (*CA, error) {
	_, err := os.Stat(filepath.Join(dir, CACertFile))
	switch {
	case err == nil:
		return LoadCA(dir)
	case errors.Is(err, os.ErrNotExist):
		return InitCA(dir, BootstrapCAName, DefaultCAValidity)
	default:
		return nil, err
	}
}

// current reports whether f holds a usable identity for req issued by ca.
func (ca *CA) current(f Files, req IssueRequest) bool {
	certData, err := readFile(f.Cert)
	if err != nil {
		return false
	}
	certs, err := parseCerts(f.Cert, certData)
	if err != nil {
		return false
	}
	keyData, err := readFile(f.Key)
	if err != nil {
		return false
	}
	key, err := parseKey(f.Key, keyData)
	if err != nil || !keyMatches(certs[0], key) {
		return false
	}
	c := certs[0]
	id, err := ca.Verify(c)
	if err != nil || id.CommonName != req.CommonName || id.Role != req.Role {
		return false
	}
	for _, d := range req.DNSNames {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range req.IPs {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func dedupeIPs(in []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range in {
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}
