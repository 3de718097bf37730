package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/pki"
)

// smallManifest is a valid container manifest for name; extraTop is added
// at the top level, extraContainer inside spec.container, and the
// resources can be replaced.
func (c *cluster) smallManifest(name, extraTop, extraContainer, cpu, memory string) string {
	return fmt.Sprintf(`%skind: Workload
metadata:
  name: %s
spec:
  type: container
  container:
    image: %s
    labels: {e2e.cluster: %s}
%s  resources:
    cpu: %s
    memory: %s
`, extraTop, name, c.image, c.nodeID, extraContainer, cpu, memory)
}

func (c *cluster) writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rootPool trusts the cluster's CA.
func (c *cluster) rootPool(t *testing.T) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.pkiDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("no certificate in ca.crt")
	}
	return pool
}

// httpsClient trusts the cluster's CA and presents certs (none when empty).
// Keep-alives are off so every request makes its own handshake.
func (c *cluster) httpsClient(t *testing.T, certs ...tls.Certificate) *http.Client {
	t.Helper()
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: c.rootPool(t), Certificates: certs},
			DisableKeepAlives: true,
		},
	}
}

func (c *cluster) adminCert(t *testing.T) tls.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.pkiDir, "admin.crt"), filepath.Join(c.pkiDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// issued returns a fresh client certificate signed by ca.
func issued(t *testing.T, ca *pki.CA, name string, role pki.Role) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// answer is a gateway answer: status code, raw body and the decoded error
// envelope when there is one.
type answer struct {
	code   int
	body   string
	errMsg string
	fields []string
}

func (c *cluster) do(t *testing.T, cl *http.Client, method, path string, body []byte) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+c.gwAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := cl.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("reading answer: %w", err)
	}
	a := answer{code: resp.StatusCode, body: string(data)}
	var env struct {
		Error struct {
			Message string `json:"message"`
			Fields  []struct {
				Field string `json:"field"`
			} `json:"fields"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &env) == nil {
		a.errMsg = env.Error.Message
		for _, f := range env.Error.Fields {
			a.fields = append(a.fields, f.Field)
		}
	}
	return a, nil
}

// keysNaming lists the raw etcd keys under prefix that contain name.
func (c *cluster) keysNaming(t *testing.T, prefix, name string) []string {
	t.Helper()
	resp, err := c.etcd.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); strings.Contains(k, name) {
			keys = append(keys, k)
		}
	}
	return keys
}

// assertRefused checks what every refused input must leave behind: nothing
// stored for name and every daemon still running.
func (c *cluster) assertRefused(t *testing.T, name string) {
	t.Helper()
	if keys := c.keysNaming(t, "/persys/workloads/", name); len(keys) != 0 {
		t.Errorf("refused workload %s was stored: %v", name, keys)
	}
	if keys := c.keysNaming(t, "/persys/", name); len(keys) != 0 {
		t.Errorf("refused workload %s left keys: %v", name, keys)
	}
	for pname, p := range c.procs {
		if !p.alive() {
			t.Fatalf("%s died on bad input:\n%s", pname, tail(p.output(), 40))
		}
	}
}

// ctlRefused runs persysctl apply on path and requires a non-zero exit.
func (c *cluster) ctlRefused(t *testing.T, path string) string {
	t.Helper()
	out, err := c.ctl("apply", "-f", path)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("persysctl apply of a bad manifest: err %v, want a non-zero exit\n%s", err, out)
	}
	t.Logf("persysctl refused it: %.300s", strings.TrimSpace(out))
	return out
}

// eventually polls cond until it holds or timeout passes; cond's second
// result describes the last observation for the failure message.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBadInputRefused sends malformed manifests and unauthorized clients to
// the gateway: each is refused with an error naming the field (or at the
// TLS handshake), nothing reaches etcd, and no daemon falls over.
func TestBadInputRefused(t *testing.T) {
	c := newCluster(t)
	admin := c.httpsClient(t, c.adminCert(t))

	fieldCases := []struct {
		name     string
		workload string // metadata.name, checked absent from etcd
		manifest string
		field    string // the field path the error must name
	}{
		{"wrong type", "bad-type-" + c.nodeID, strings.Replace(c.smallManifest("bad-type-"+c.nodeID, "", "", "10m", "8Mi"),
			"type: container", "type: banana", 1), "spec.type"},
		{"negative memory", "bad-mem-" + c.nodeID, c.smallManifest("bad-mem-"+c.nodeID, "", "", "10m", "-64Mi"), "spec.resources.memory"},
		{"unknown top-level field", "bad-top-" + c.nodeID, c.smallManifest("bad-top-"+c.nodeID, "extra: 1\n", "", "10m", "8Mi"), "extra"},
		{"unknown nested field", "bad-nested-" + c.nodeID, c.smallManifest("bad-nested-"+c.nodeID, "", "    imagee: typo\n", "10m", "8Mi"), "spec.container.imagee"},
	}
	for _, tc := range fieldCases {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.workload
			path := c.writeFile(t, name+".yaml", tc.manifest)
			out := c.ctlRefused(t, path)
			if !strings.Contains(out, tc.field+":") {
				t.Errorf("persysctl output does not name field %s:\n%s", tc.field, out)
			}
			a, err := c.do(t, admin, http.MethodPost, "/v1/workloads", []byte(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			if a.code != http.StatusBadRequest || !contains(a.fields, tc.field) {
				t.Errorf("gateway answered %d with fields %v, want 400 naming %s\n%s", a.code, a.fields, tc.field, a.body)
			}
			c.assertRefused(t, name)
		})
	}

	t.Run("oversized body", func(t *testing.T) {
		name := "bad-big-" + c.nodeID
		big := c.smallManifest(name, "", "    env: {PADDING: "+strings.Repeat("x", manifest.MaxSize)+"}\n", "10m", "8Mi")
		a, err := c.do(t, admin, http.MethodPost, "/v1/workloads", []byte(big))
		if err != nil {
			t.Fatal(err)
		}
		if a.code != http.StatusRequestEntityTooLarge || !strings.Contains(a.errMsg, "larger than the limit") {
			t.Errorf("gateway answered %d %q, want 413 naming the limit\n%.300s", a.code, a.errMsg, a.body)
		}
		out := c.ctlRefused(t, c.writeFile(t, name+".yaml", big))
		if !strings.Contains(out, fmt.Sprintf("larger than the limit of %d bytes", manifest.MaxSize)) {
			t.Errorf("persysctl output does not name the size limit:\n%.500s", out)
		}
		c.assertRefused(t, name)
	})

	syntaxCases := []struct {
		name, body string
	}{
		{"broken yaml", fmt.Sprintf("kind: [Workload\nmetadata: {name: bad-yaml-%s}\n", c.nodeID)},
		{"broken json", fmt.Sprintf(`{"kind": "Workload", "metadata": {"name": "bad-json-%s"}, "spec": {`, c.nodeID)},
	}
	for _, tc := range syntaxCases {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, "broken ", "bad-") + "-" + c.nodeID
			a, err := c.do(t, admin, http.MethodPost, "/v1/workloads", []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if a.code != http.StatusBadRequest || a.errMsg == "" {
				t.Errorf("gateway answered %d %q, want 400 with a message\n%s", a.code, a.errMsg, a.body)
			}
			out := c.ctlRefused(t, c.writeFile(t, name+".txt", tc.body))
			if !strings.Contains(strings.ToLower(out), "invalid") {
				t.Errorf("persysctl output does not say the document is invalid:\n%s", out)
			}
			c.assertRefused(t, name)
		})
	}

	valid := c.smallManifest("bad-auth-"+c.nodeID, "", "", "10m", "8Mi")

	t.Run("no client certificate", func(t *testing.T) {
		// The gateway admits clients without a certificate (they may
		// carry an API token instead) and answers them 401.
		a, err := c.do(t, c.httpsClient(t), http.MethodPost, "/v1/workloads", []byte(valid))
		if err == nil && a.code != http.StatusUnauthorized {
			t.Fatalf("request without a client certificate got an HTTP answer %d, want 401:\n%s", a.code, a.body)
		}
		t.Logf("refused as expected: %v %d %s", err, a.code, a.errMsg)
		c.assertRefused(t, "bad-auth-"+c.nodeID)
	})

	t.Run("certificate of another CA", func(t *testing.T) {
		other, err := pki.InitCA(t.TempDir(), "intruder-ca", pki.DefaultCAValidity)
		if err != nil {
			t.Fatal(err)
		}
		foreign := issued(t, other, "admin", pki.RoleAdmin)
		cl := c.httpsClient(t)
		// Go's client only offers a certificate issued by a CA the server
		// lists as acceptable; present the foreign one regardless, so the
		// server's verification is what refuses it.
		offered := make(chan struct{}, 8)
		cl.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			offered <- struct{}{}
			return &foreign, nil
		}
		a, err := c.do(t, cl, http.MethodPost, "/v1/workloads", []byte(valid))
		if err == nil {
			t.Fatalf("request with a foreign certificate got an HTTP answer %d:\n%s", a.code, a.body)
		}
		if len(offered) == 0 {
			t.Fatalf("the foreign certificate was never offered (error: %v)", err)
		}
		t.Logf("refused as expected: %v", err)
		c.assertRefused(t, "bad-auth-"+c.nodeID)
	})

	t.Run("viewer cannot apply", func(t *testing.T) {
		ca, err := pki.LoadCA(c.pkiDir)
		if err != nil {
			t.Fatal(err)
		}
		viewer := c.httpsClient(t, issued(t, ca, "watcher", pki.RoleViewer))
		// The certificate itself is good: a viewer may read.
		a, err := c.do(t, viewer, http.MethodGet, "/v1/workloads", nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.code != http.StatusOK {
			t.Fatalf("viewer GET /v1/workloads: %d, want 200\n%s", a.code, a.body)
		}
		a, err = c.do(t, viewer, http.MethodPost, "/v1/workloads", []byte(valid))
		if err != nil {
			t.Fatal(err)
		}
		if a.code != http.StatusForbidden || !strings.Contains(a.errMsg, "viewer") {
			t.Errorf("viewer apply: %d %q, want 403 naming the role\n%s", a.code, a.errMsg, a.body)
		}
		c.assertRefused(t, "bad-auth-"+c.nodeID)
	})

	t.Run("path names and missing objects", func(t *testing.T) {
		// A '/' from %2F cannot name a workload: 400 naming the field,
		// not a 500 from the store.
		a, err := c.do(t, admin, http.MethodDelete, "/v1/workloads/a%2Fb", nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.code != http.StatusBadRequest || len(a.fields) != 1 || a.fields[0] != "name" {
			t.Errorf("DELETE /v1/workloads/a%%2Fb: %d fields %v, want 400 naming name\n%s", a.code, a.fields, a.body)
		}
		// A missing object is named as the user named it, never by its key.
		out, err := c.ctl("delete", "workload", "nosuch-"+c.nodeID)
		if err == nil {
			t.Fatalf("persysctl delete of a missing workload succeeded:\n%s", out)
		}
		if want := fmt.Sprintf("workload %q not found", "nosuch-"+c.nodeID); !strings.Contains(out, want) || strings.Contains(out, "/persys") || strings.Contains(out, "workloads/") {
			t.Errorf("persysctl delete of a missing workload says %q, want %q and no store key", strings.TrimSpace(out), want)
		}
	})

	// After all of it the cluster still answers an authorized read.
	c.mustCtl("get", "nodes")
}

// TestObservabilityEndpoints scrapes every daemon's metrics and health
// endpoints after one workload went through, and reads the gateway's
// OpenAPI document.
func TestObservabilityEndpoints(t *testing.T) {
	c := newCluster(t)
	name := "obs-" + c.nodeID
	path := c.writeFile(t, name+".yaml", c.smallManifest(name, "", "", "10m", "8Mi"))
	c.mustCtl("apply", "-f", path, "--wait", "--timeout", "2m")

	want := map[string][]string{
		"scheduler": {
			"persys_scheduler_workloads",
			"persys_scheduler_placement_duration_seconds",
			"persys_scheduler_queue_depth",
			"persys_scheduler_applies_total",
		},
		"agent":   {"persys_agent_apply_duration_seconds"},
		"gateway": {"persys_gateway_requests_total"},
	}
	for daemon, names := range want {
		t.Run(daemon, func(t *testing.T) {
			base := "http://" + c.metrics[daemon]
			body, err := httpGet(base + "/metrics")
			if err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			for _, n := range names {
				if !strings.Contains(body, "\n"+n) {
					t.Errorf("%s /metrics lacks %s", daemon, n)
				}
			}
			if body, err := httpGet(base + "/healthz"); err != nil {
				t.Errorf("healthz: %v\n%s", err, body)
			}
			// Readiness is a state that may flip (a node re-registering);
			// it must be reached, not be there at one instant.
			eventually(t, daemon+" /readyz 200", 30*time.Second, func() (bool, string) {
				body, err := httpGet(base + "/readyz")
				return err == nil, fmt.Sprintf("%v %s", err, strings.TrimSpace(body))
			})
		})
	}

	t.Run("openapi", func(t *testing.T) {
		a, err := c.do(t, c.httpsClient(t, c.adminCert(t)), http.MethodGet, "/openapi.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.code != http.StatusOK {
			t.Fatalf("GET /openapi.json: %d\n%s", a.code, a.body)
		}
		var doc struct {
			OpenAPI string                     `json:"openapi"`
			Paths   map[string]json.RawMessage `json:"paths"`
		}
		if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
			t.Fatalf("openapi.json is not JSON: %v", err)
		}
		if doc.OpenAPI == "" {
			t.Error(`openapi.json has no "openapi" field`)
		}
		if _, ok := doc.Paths["/v1/workloads"]; !ok {
			t.Errorf("openapi.json lacks path /v1/workloads")
		}
	})

	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("containers removed", 60*time.Second, func() bool { return len(c.containers(name)) == 0 })
	c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
}
