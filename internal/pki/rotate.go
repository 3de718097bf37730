package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// CABundleFile is the file in a CA directory that lists every CA
// certificate peers trust: the signing CA first, then the CAs it replaced
// while their overlap lasts. Without it the bundle is ca.crt alone.
const CABundleFile = "ca-bundle.crt"

// retireHeader is the PEM header of a replaced CA in the bundle: the time
// (RFC 3339) after which it is no longer trusted.
const retireHeader = "Persys-Retire-After"

// LoadBundle returns the PEM bundle of the CA directory dir (the signing
// CA first) and its certificates. Replaced CAs whose overlap has ended at
// now are left out.
func LoadBundle(dir string, now time.Time) ([]byte, []*x509.Certificate, error) {
	data, err := readFile(filepath.Join(dir, CABundleFile))
	if errors.Is(err, os.ErrNotExist) {
		data, err = readFile(filepath.Join(dir, CACertFile))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load ca bundle: %w", err)
	}
	return filterBundle(data, now)
}

// filterBundle drops retired blocks and re-encodes what remains.
func filterBundle(data []byte, now time.Time) ([]byte, []*x509.Certificate, error) {
	var out []byte
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if v := b.Headers[retireHeader]; v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, nil, fmt.Errorf("ca bundle: %w: header %s %q: %w", ErrInvalid, retireHeader, v, err)
			}
			if now.After(t) {
				continue
			}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("ca bundle: %w: certificate %d: %w", ErrInvalid, len(certs)+1, err)
		}
		if now.After(c.NotAfter) {
			continue
		}
		certs = append(certs, c)
		out = append(out, pem.EncodeToMemory(b)...)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("ca bundle: %w: no current CA certificate", ErrInvalid)
	}
	return out, certs, nil
}

// RotateCA replaces the signing CA of dir with a new one (new key, new
// certificate, common name cn, lifetime validity). The previous CA stays
// in dir/ca-bundle.crt, trusted for overlap more, so that certificates it
// issued keep working while every component renews; new certificates are
// signed by the new CA. The bundle also holds the new CA cross-signed by
// the previous one, so a peer that still trusts only the previous CA
// verifies new certificates (Holder presents the bundle with its chain).
// The previous key is deleted.
func RotateCA(dir, cn string, validity, overlap time.Duration) (*CA, error) {
	if overlap <= 0 {
		return nil, fmt.Errorf("rotate ca: overlap %s: %w: must be positive", overlap, ErrInvalid)
	}
	old, err := LoadCA(dir)
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	now := time.Now()
	_, prev, err := LoadBundle(dir, now)
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	staging, err := os.MkdirTemp(dir, ".rotate")
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	defer os.RemoveAll(staging)
	next, err := InitCA(staging, cn, validity)
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	retire := now.Add(overlap).UTC().Format(time.RFC3339)
	// The new CA's key certified by the old CA: peers that trust only the
	// old CA (they have not renewed yet) verify new certificates through
	// it, because every component presents its bundle with its chain.
	crossTmpl := *next.Cert
	crossTmpl.SerialNumber, err = newSerial()
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	if crossTmpl.NotAfter.After(old.Cert.NotAfter) {
		crossTmpl.NotAfter = old.Cert.NotAfter
	}
	crossTmpl.AuthorityKeyId = nil
	crossTmpl.MaxPathLen, crossTmpl.MaxPathLenZero = 0, true
	cross, err := x509.CreateCertificate(rand.Reader, &crossTmpl, old.Cert, &next.Key.PublicKey, old.Key)
	if err != nil {
		return nil, fmt.Errorf("rotate ca: cross-sign the new CA: %w", err)
	}
	bundle := append([]byte(nil), next.CertPEM...)
	bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{retireHeader: retire}, Bytes: old.Cert.Raw})...)
	bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{retireHeader: retire}, Bytes: cross})...)
	// Earlier replaced CAs keep their own retirement time.
	data, _ := readFile(filepath.Join(dir, CABundleFile))
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || b.Headers[retireHeader] == "" {
			continue
		}
		for _, c := range prev {
			if string(c.Raw) == string(b.Bytes) && !c.Equal(old.Cert) {
				bundle = append(bundle, pem.EncodeToMemory(b)...)
			}
		}
	}
	keyPEM, err := encodeKey(next.Key)
	if err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	// Bundle first: a reader between the writes trusts both CAs.
	if err := writeReplace(filepath.Join(dir, CABundleFile), bundle, 0o644); err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	if err := writeReplace(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	if err := writeReplace(filepath.Join(dir, CACertFile), next.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("rotate ca: %w", err)
	}
	return next, nil
}
