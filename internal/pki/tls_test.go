package pki

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveOnce accepts one connection on ln, runs the server handshake and,
// when it succeeds, writes the peer's identity as "cn role\n". The handshake
// result is sent on the returned channel.
func serveOnce(t *testing.T, ln net.Listener, cfg *tls.Config) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
		conn := tls.Server(raw, cfg)
		if err := conn.Handshake(); err != nil {
			done <- err
			return
		}
		state := conn.ConnectionState()
		id, err := PeerIdentity(&state)
		if err != nil {
			done <- err
			return
		}
		_, err = conn.Write([]byte(id.CommonName + " " + string(id.Role) + "\n"))
		done <- err
	}()
	return done
}

// dial connects with cfg and returns the line the server wrote, or the first
// error (in TLS 1.3 a rejected client certificate surfaces on the first read).
func dial(addr string, cfg *tls.Config) (string, error) {
	raw, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestMutualTLS(t *testing.T) {
	cluster, err := Bootstrap(filepath.Join(t.TempDir(), "cluster"), []string{"node-1"}, nil, nil)
	if err != nil {
		t.Fatalf("Bootstrap cluster: %v", err)
	}
	foreign, err := Bootstrap(filepath.Join(t.TempDir(), "foreign"), []string{"node-1"}, nil, nil)
	if err != nil {
		t.Fatalf("Bootstrap foreign: %v", err)
	}

	// A client with no certificate at all: trusts the cluster CA only.
	noCert, err := ClientTLS(cluster.Agents["node-1"], "localhost")
	if err != nil {
		t.Fatal(err)
	}
	noCert.Certificates = nil

	// A client with the foreign CA's agent certificate but trusting the
	// cluster CA, so the server side is what refuses it.
	foreignCert, err := ClientTLS(Files{CA: cluster.CA, Cert: foreign.Agents["node-1"].Cert, Key: foreign.Agents["node-1"].Key}, "localhost")
	if err != nil {
		t.Fatal(err)
	}

	// A user-role certificate that names localhost: its lack of the
	// ServerAuth usage alone must make clients refuse it as a server.
	ca, err := LoadCA(cluster.Dir)
	if err != nil {
		t.Fatal(err)
	}
	userPEM, userKey, err := ca.Issue(IssueRequest{CommonName: "carol", Role: RoleViewer, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteIdentity(cluster.Dir, "carol", userPEM, userKey); err != nil {
		t.Fatal(err)
	}
	userServer := Files{CA: cluster.CA, Cert: filepath.Join(cluster.Dir, "carol.crt"), Key: filepath.Join(cluster.Dir, "carol.key")}

	mustClient := func(f Files, serverName string) *tls.Config {
		t.Helper()
		cfg, err := ClientTLS(f, serverName)
		if err != nil {
			t.Fatalf("ClientTLS: %v", err)
		}
		return cfg
	}

	tests := []struct {
		name       string
		server     Files // zero: the scheduler's
		client     *tls.Config
		wantID     string // "" means the connection must fail
		serverFail bool   // the server handshake must fail too
	}{
		{name: "agent cert", client: mustClient(cluster.Agents["node-1"], "localhost"), wantID: "node-1 agent"},
		{name: "gateway cert", client: mustClient(cluster.Gateway, "scheduler"), wantID: "gateway gateway"},
		{name: "admin user cert", client: mustClient(cluster.Admin, "127.0.0.1"), wantID: "admin admin"},
		{name: "cert from another CA", client: foreignCert, serverFail: true},
		{name: "no client cert", client: noCert, serverFail: true},
		{name: "client trusts another CA", client: mustClient(foreign.Agents["node-1"], "localhost"), serverFail: true},
		{name: "user cert as server", server: userServer, client: mustClient(cluster.Agents["node-1"], "localhost"), serverFail: true},
		{name: "server name not in cert", client: mustClient(cluster.Agents["node-1"], "example.com"), serverFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverFiles := tt.server
			if serverFiles == (Files{}) {
				serverFiles = cluster.Scheduler
			}
			server, err := ServerTLS(serverFiles)
			if err != nil {
				t.Fatalf("ServerTLS: %v", err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := serveOnce(t, ln, server)
			got, clientErr := dial(ln.Addr().String(), tt.client)
			serverErr := <-done
			if tt.wantID != "" {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("client err = %v, server err = %v; want success", clientErr, serverErr)
				}
				if got != tt.wantID {
					t.Fatalf("server saw %q, want %q", got, tt.wantID)
				}
				return
			}
			if clientErr == nil {
				t.Fatalf("client succeeded (read %q), want failure", got)
			}
			if tt.serverFail && serverErr == nil {
				t.Fatalf("server handshake succeeded, want failure")
			}
			t.Logf("client: %v; server: %v", clientErr, serverErr)
		})
	}
}

func TestServerTLSConfig(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || len(cfg.Certificates) != 1 {
		t.Fatalf("server config: min=%x auth=%v cas=%v certs=%d", cfg.MinVersion, cfg.ClientAuth, cfg.ClientCAs != nil, len(cfg.Certificates))
	}
	ccfg, err := ClientTLS(b.Admin, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	if ccfg.MinVersion != tls.VersionTLS13 || ccfg.RootCAs == nil || ccfg.ServerName != "gateway" || len(ccfg.Certificates) != 1 {
		t.Fatalf("client config: min=%x roots=%v name=%q certs=%d", ccfg.MinVersion, ccfg.RootCAs != nil, ccfg.ServerName, len(ccfg.Certificates))
	}
}

func TestTLSFilesErrors(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+10), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		files   Files
		wantErr error
		naming  string
	}{
		{name: "empty ca path", files: Files{Cert: b.Admin.Cert, Key: b.Admin.Key}, wantErr: ErrInvalid, naming: "ca file"},
		{name: "empty key path", files: Files{CA: b.CA, Cert: b.Admin.Cert}, wantErr: ErrInvalid, naming: "key file"},
		{name: "missing ca", files: Files{CA: missing, Cert: b.Admin.Cert, Key: b.Admin.Key}, wantErr: os.ErrNotExist, naming: missing},
		{name: "junk ca", files: Files{CA: junk, Cert: b.Admin.Cert, Key: b.Admin.Key}, wantErr: ErrInvalid, naming: junk},
		{name: "junk cert", files: Files{CA: b.CA, Cert: junk, Key: b.Admin.Key}, wantErr: ErrInvalid, naming: junk},
		{name: "key as cert", files: Files{CA: b.CA, Cert: b.Admin.Key, Key: b.Admin.Key}, wantErr: ErrInvalid, naming: b.Admin.Key},
		{name: "junk key", files: Files{CA: b.CA, Cert: b.Admin.Cert, Key: junk}, wantErr: ErrInvalid, naming: junk},
		{name: "cert as key", files: Files{CA: b.CA, Cert: b.Admin.Cert, Key: b.Admin.Cert}, wantErr: ErrInvalid, naming: b.Admin.Cert},
		{name: "oversized cert", files: Files{CA: b.CA, Cert: big, Key: b.Admin.Key}, wantErr: ErrInvalid, naming: big},
		{name: "mismatched key", files: Files{CA: b.CA, Cert: b.Admin.Cert, Key: b.Agents["n1"].Key}, wantErr: ErrInvalid, naming: b.Agents["n1"].Key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, serr := ServerTLS(tt.files)
			_, cerr := ClientTLS(tt.files, "localhost")
			for _, err := range []error{serr, cerr} {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.naming) {
					t.Fatalf("error = %v, want %v naming %q", err, tt.wantErr, tt.naming)
				}
			}
		})
	}
}

func TestPeerIdentityWithoutCert(t *testing.T) {
	tests := []struct {
		name  string
		state *tls.ConnectionState
	}{
		{name: "nil state", state: nil},
		{name: "no chains", state: &tls.ConnectionState{}},
		{name: "empty chain", state: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PeerIdentity(tt.state); !errors.Is(err, ErrNoPeerCert) {
				t.Fatalf("error = %v, want ErrNoPeerCert", err)
			}
		})
	}
}
