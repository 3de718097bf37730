package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// validSchedulerOptions passes validate; tests change one thing.
func validSchedulerOptions() schedulerOptions {
	o := schedulerOptions{}
	o.flags(&cobra.Command{}) // the defaults
	o.ca, o.cert, o.key = "ca.crt", "scheduler.crt", "scheduler.key"
	return o
}

func TestSchedulerEtcdFlags(t *testing.T) {
	creds := func(o *schedulerOptions) { o.etcdCA, o.etcdCert, o.etcdKey = "ca.crt", "s.crt", "s.key" }
	tests := []struct {
		name    string
		set     func(o *schedulerOptions)
		wantErr string // empty: valid
	}{
		{"embedded", func(o *schedulerOptions) {}, ""},
		{"https with client certificate", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379, https://10.0.0.2:2379"
			creds(o)
		}, ""},
		{"http refused", func(o *schedulerOptions) {
			o.etcdEndpoints = "http://10.0.0.1:2379"
		}, "--etcd-insecure"},
		{"http refused with credentials too", func(o *schedulerOptions) {
			o.etcdEndpoints = "http://10.0.0.1:2379"
			creds(o)
		}, "--etcd-insecure"},
		{"http allowed with --etcd-insecure", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdInsecure = "http://10.0.0.1:2379", true
		}, ""},
		{"no scheme", func(o *schedulerOptions) {
			o.etcdEndpoints = "10.0.0.1:2379"
			creds(o)
		}, "--etcd-endpoints"},
		{"https without client certificate", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCA = "https://10.0.0.1:2379", "ca.crt"
		}, "--etcd-cert is required"},
		{"https without ca", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379"
			creds(o)
			o.etcdCA = ""
		}, "--etcd-ca is required"},
		{"https without client certificate, --etcd-insecure", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCA, o.etcdInsecure = "https://10.0.0.1:2379", "ca.crt", true
		}, ""},
		{"cert without key", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCert, o.etcdInsecure = "https://10.0.0.1:2379", "s.crt", true
		}, "--etcd-key"},
		{"mixed schemes", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdInsecure = "https://10.0.0.1:2379,http://10.0.0.2:2379", true
		}, "mixes"},
		{"empty endpoint", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379,,"
			creds(o)
		}, "empty endpoint"},
		{"etcd credentials without endpoints", func(o *schedulerOptions) { o.etcdCert = "s.crt" }, "--etcd-cert needs --etcd-endpoints"},
		{"insecure without endpoints", func(o *schedulerOptions) { o.etcdInsecure = true }, "--etcd-insecure needs --etcd-endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validSchedulerOptions()
			tt.set(&o)
			err := o.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// syncBuffer is a log sink that the scheduler writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSchedulerEmbeddedEtcdIsLocked: persys scheduler without
// --etcd-endpoints serves its embedded etcd over TLS with its own
// certificate and answers only clients with a certificate of its CA.
func TestSchedulerEmbeddedEtcdIsLocked(t *testing.T) {
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := validSchedulerOptions()
	o.listen, o.metricsListen, o.dataDir = "127.0.0.1:0", "", t.TempDir()
	o.ca, o.cert, o.key = b.CA, b.Scheduler.Cert, b.Scheduler.Key
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan string, 1)
	go func() { done <- runScheduler(ctx, &o, slog.New(slog.NewJSONHandler(logs, nil)), started) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("scheduler: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("scheduler did not start")
	}
	var endpoints []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var rec struct {
			Msg       string   `json:"msg"`
			Endpoints []string `json:"endpoints"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "embedded etcd ready" {
			endpoints = rec.Endpoints
		}
	}
	if len(endpoints) != 1 || !strings.HasPrefix(endpoints[0], "https://127.0.0.1:") {
		t.Fatalf("embedded etcd endpoints %q, want one https loopback URL", endpoints)
	}

	put := func(endpoint string, cfg *tls.Config) error {
		cli, err := store.Connect([]string{endpoint}, cfg)
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = cli.Put(ctx, "/persys/nodes/intruder", "x")
		return err
	}
	if err := put("http://"+strings.TrimPrefix(endpoints[0], "https://"), nil); err == nil {
		t.Error("plaintext client accepted")
	}
	noCert, err := pki.ClientTLS(b.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	noCert.Certificates = nil
	if err := put(endpoints[0], noCert); err == nil {
		t.Error("TLS client without a certificate accepted")
	}
	// Certificates of the cluster's CA, a daemon's and a user's, do not
	// open the store: it has a CA of its own.
	ca, err := pki.LoadCA(filepath.Dir(b.CA))
	if err != nil {
		t.Fatal(err)
	}
	userCert, userKey, err := ca.Issue(pki.IssueRequest{CommonName: "olga", Role: pki.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	userFiles := pki.Files{CA: b.CA, Cert: filepath.Join(t.TempDir(), "olga.crt"), Key: filepath.Join(t.TempDir(), "olga.key")}
	if err := os.WriteFile(userFiles.Cert, userCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userFiles.Key, userKey, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string]pki.Files{"scheduler": b.Scheduler, "operator": userFiles} {
		cfg, err := pki.ClientTLS(files, "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootCAs = nil
		cfg.InsecureSkipVerify = true // the server is not under test here; the client certificate is
		if err := put(endpoints[0], cfg); err == nil {
			t.Errorf("a %s certificate of the cluster's CA opened the store", name)
		}
	}
	// The store's own certificate, readable only in the data folder, does.
	own, err := pki.ClientTLS(pki.Files{CA: filepath.Join(o.dataDir, storePKIDir, pki.CACertFile),
		Cert: filepath.Join(o.dataDir, storePKIDir, pki.StoreCertFile), Key: filepath.Join(o.dataDir, storePKIDir, pki.StoreKeyFile)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := put(endpoints[0], own); err != nil {
		t.Errorf("the store's own certificate refused: %v", err)
	}
	fi, err := os.Stat(filepath.Join(o.dataDir, storePKIDir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store identity folder: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
}

func TestSchedulerAgentCallsPerNode(t *testing.T) {
	for n, wantErr := range map[int]bool{defaultAgentCallsPerNode: false, 1: false, 1024: false, 0: true, -3: true, 1025: true} {
		o := validSchedulerOptions()
		o.agentCallsPerNode = n
		err := o.validate()
		if (err != nil) != wantErr {
			t.Errorf("--agent-calls-per-node %d: err %v, want error %v", n, err, wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--agent-calls-per-node") {
			t.Errorf("--agent-calls-per-node %d: %v does not name the flag", n, err)
		}
	}
}

func TestSchedulerMemoryLimitFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "3584MiB": 3584 << 20, "3.5GiB": 3584 << 20} {
		o := schedulerOptions{}
		cmd := &cobra.Command{}
		o.flags(cmd)
		if err := cmd.ParseFlags([]string{"--memory-limit", in}); err != nil {
			t.Errorf("--memory-limit %s: %v", in, err)
			continue
		}
		if int64(o.memoryLimit) != want {
			t.Errorf("--memory-limit %s: %d bytes, want %d", in, o.memoryLimit, want)
		}
	}
	for _, in := range []string{"4GB", "-1GiB", "4096", "lots"} {
		o := schedulerOptions{}
		cmd := &cobra.Command{}
		o.flags(cmd)
		err := cmd.ParseFlags([]string{"--memory-limit", in})
		if err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("--memory-limit %s: %v, want an error naming the flag", in, err)
		}
	}
	if o := validSchedulerOptions(); o.memoryLimit != 0 {
		t.Errorf("default memory limit %d, want 0 (none)", o.memoryLimit)
	}
}

func TestSchedulerHeartbeatRateFlags(t *testing.T) {
	if o := validSchedulerOptions(); o.maxHeartbeatRate != 1000 || o.leaseExtensionRate != 0 {
		t.Fatalf("defaults: --max-heartbeat-rate %v, --lease-extension-rate %v; want 1000 and 0", o.maxHeartbeatRate, o.leaseExtensionRate)
	}
	for _, tc := range []struct {
		flag, value string
		ok          bool
	}{
		{"--max-heartbeat-rate", "50", true},
		{"--max-heartbeat-rate", "0", false},
		{"--max-heartbeat-rate", "-5", false},
		{"--max-heartbeat-rate", "NaN", false},
		{"--max-heartbeat-rate", "2e6", false},
		{"--lease-extension-rate", "0", true},
		{"--lease-extension-rate", "20", true},
		{"--lease-extension-rate", "-1", false},
		{"--lease-extension-rate", "NaN", false},
	} {
		o := validSchedulerOptions()
		cmd := &cobra.Command{}
		o.flags(cmd)
		o.ca, o.cert, o.key = "ca.crt", "scheduler.crt", "scheduler.key"
		if err := cmd.ParseFlags([]string{tc.flag, tc.value}); err != nil {
			t.Fatalf("%s %s: %v", tc.flag, tc.value, err)
		}
		err := o.validate()
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.flag)) {
			t.Errorf("%s %s: %v; want valid %v, an error naming the flag", tc.flag, tc.value, err, tc.ok)
		}
	}
}
