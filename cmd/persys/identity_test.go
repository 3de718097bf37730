package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAgentIdentityFlags(t *testing.T) {
	joined := t.TempDir()
	if err := os.MkdirAll(filepath.Join(joined, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(joined, "pki", "agent.crt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	hash := "sha256:" + strings.Repeat("0f", 32)
	tests := []struct {
		name    string
		o       agentOptions
		wantErr string
	}{
		{name: "files", o: agentOptions{ca: "a", cert: "b", key: "c"}},
		{name: "files and a token", o: agentOptions{ca: "a", cert: "b", key: "c", joinToken: "t"}, wantErr: "--join-token"},
		{name: "some files", o: agentOptions{ca: "a", cert: "b"}, wantErr: "go together"},
		{name: "joined before", o: agentOptions{dataDir: joined}},
		{name: "join", o: agentOptions{dataDir: t.TempDir(), joinToken: "a.b", caHash: hash}},
		{name: "nothing to join with", o: agentOptions{dataDir: t.TempDir()}, wantErr: "holds no identity"},
		{name: "token without hash", o: agentOptions{dataDir: t.TempDir(), joinToken: "a.b"}, wantErr: "holds no identity"},
		{name: "bad hash", o: agentOptions{dataDir: t.TempDir(), joinToken: "a.b", caHash: "sha256:xyz"}, wantErr: "--ca-hash"},
		{name: "bad renew fraction", o: agentOptions{ca: "a", cert: "b", key: "c", renewFraction: 1.5}, wantErr: "--cert-renew-fraction"},
		{name: "negative identity reload", o: agentOptions{ca: "a", cert: "b", key: "c", identityReload: -time.Second}, wantErr: "--identity-reload-interval"},
		{name: "revocation refresh too short", o: agentOptions{ca: "a", cert: "b", key: "c", revocationRefresh: time.Millisecond}, wantErr: "--revocation-refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.validateIdentity()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validateIdentity: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAgentSANs(t *testing.T) {
	dns, ips := agentSANs(agentOptions{advertise: "10.1.2.3"})
	if len(dns) != 0 || !slices.ContainsFunc(ips, net.ParseIP("10.1.2.3").Equal) || !slices.ContainsFunc(ips, net.IPv4(127, 0, 0, 1).Equal) {
		t.Fatalf("advertised ip: %v %v", dns, ips)
	}
	dns, _ = agentSANs(agentOptions{advertise: "node-a.example"})
	if !slices.Equal(dns, []string{"node-a.example"}) {
		t.Fatalf("advertised name: %v", dns)
	}
}
