package pki

import (
	"crypto/tls"
	"fmt"
	"testing"
)

// BenchmarkHandshake measures full mTLS handshakes (TLS 1.3, P-256, client
// certificate verified) per second against a Holder server configuration,
// without a revocation checker and with one holding 10 000 revoked serials
// and 1 000 revoked nodes. Run with -benchtime and read the conns/s metric.
func BenchmarkHandshake(b *testing.B) {
	bundle, err := Bootstrap(b.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	server, err := LoadHolder(bundle.Scheduler)
	if err != nil {
		b.Fatal(err)
	}
	client, err := LoadHolder(bundle.Agents["n1"])
	if err != nil {
		b.Fatal(err)
	}
	big := NewRevocationSet()
	var list []Revocation
	for i := range 10000 {
		list = append(list, Revocation{Serial: fmt.Sprintf("%x", 1_000_000+i)})
	}
	for i := range 1000 {
		list = append(list, Revocation{NodeID: fmt.Sprintf("gone-%d", i)})
	}
	big.Replace(list)

	for _, bc := range []struct {
		name string
		rc   RevocationChecker
	}{{"no-revocation-check", nil}, {"revocation-check", big}} {
		b.Run(bc.name, func(b *testing.B) {
			server.SetRevocationChecker(bc.rc)
			client.SetRevocationChecker(bc.rc)
			addr := serveTLS(b, server.ServerTLS(tls.RequireAndVerifyClientCert))
			cfg := client.ClientTLS("localhost")
			b.ResetTimer()
			for b.Loop() {
				if err := tlsCall(addr, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// BenchmarkRevoked measures the revocation check alone (what each
// handshake adds): a set of 10 000 serials and 1 000 nodes, a certificate
// that is not in it.
func BenchmarkRevoked(b *testing.B) {
	bundle, err := Bootstrap(b.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := LoadHolder(bundle.Agents["n1"])
	if err != nil {
		b.Fatal(err)
	}
	set := NewRevocationSet()
	var list []Revocation
	for i := range 10000 {
		list = append(list, Revocation{Serial: fmt.Sprintf("%x", 1_000_000+i)})
	}
	for i := range 1000 {
		list = append(list, Revocation{NodeID: fmt.Sprintf("gone-%d", i)})
	}
	set.Replace(list)
	leaf := h.Leaf()
	for b.Loop() {
		if set.Revoked(leaf) {
			b.Fatal("revoked")
		}
	}
}
