package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// Files names the PEM files of one identity: the CA bundle that peers are
// verified against, and the identity's own certificate and key.
type Files struct {
	CA, Cert, Key string
}

// ServerTLS returns a TLS 1.3 server configuration that presents f's
// certificate and requires every client to present a certificate that
// chains to f.CA. Authorization by role is the caller's job (PeerIdentity).
func ServerTLS(f Files) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("server tls: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientTLS returns a TLS 1.3 client configuration that presents f's
// certificate and trusts only servers whose certificate chains to f.CA and
// names serverName (when empty, the host of the dialled address is used).
func ClientTLS(f Files, serverName string) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("client tls: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// load reads the CA bundle and the key pair, with errors naming the file.
func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	for _, p := range []struct{ field, path string }{{"ca file", f.CA}, {"cert file", f.Cert}, {"key file", f.Key}} {
		if p.path == "" {
			return nil, tls.Certificate{}, fmt.Errorf("%s: %w: empty path", p.field, ErrInvalid)
		}
	}
	caData, err := readFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cas, err := parseCerts(f.CA, caData)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	certData, err := readFile(f.Cert)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	certs, err := parseCerts(f.Cert, certData)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	keyData, err := readFile(f.Key)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := parseKey(f.Key, keyData)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	if !keyMatches(certs[0], key) {
		return nil, tls.Certificate{}, fmt.Errorf("%s: %w: key does not match %s", f.Key, ErrInvalid, f.Cert)
	}
	chain := make([][]byte, 0, len(certs))
	for _, c := range certs {
		chain = append(chain, c.Raw)
	}
	return pool, tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: certs[0]}, nil
}
