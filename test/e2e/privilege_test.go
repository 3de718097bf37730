package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// TestLeastPrivilege tries, as an operator would, to reach the host and
// another user's secrets through workloads on a real cluster (real etcd,
// Docker and mTLS): every attempt is refused naming the field and the
// missing permission, nothing is stored, and the refused secret use is an
// audit event. An admin's privileged workload is admitted by the
// scheduler but refused by the node's own policy (default off).
func TestLeastPrivilege(t *testing.T) {
	c := newCluster(t)
	admin := c.httpsClient(t, c.adminCert(t))
	ca, err := pki.LoadCA(c.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	operator := c.httpsClient(t, issued(t, ca, "olga", pki.RoleOperator))

	for _, s := range []struct{ body string }{
		{`{"name": "admin-db", "stringData": {"password": "s3cret"}}`},
		{`{"name": "team-db", "stringData": {"password": "shared"}, "allowRoles": ["operator"]}`},
	} {
		a, err := c.do(t, admin, http.MethodPost, "/v1/secrets", []byte(s.body))
		if err != nil || a.code != http.StatusCreated {
			t.Fatalf("admin creates a secret: %v %d %s", err, a.code, a.body)
		}
	}

	refused := []struct {
		name, extraTop, extraContainer, field, want string
	}{
		{"host-root", "", "    volumes: [{type: bind, source: /, target: /host}]\n", "spec.container.volumes[0].source", "workloads.host"},
		{"host-etc", "", "    volumes: [{type: bind, source: /etc, target: /etc2, readOnly: true}]\n", "spec.container.volumes[0].source", "workloads.host"},
		{"privileged", "", "    privileged: true\n", "spec.container.privileged", "workloads.host"},
		{"low-port", "", "    ports: [{containerPort: 8080, hostPort: 80, hostIP: 127.0.0.1}]\n", "spec.container.ports[0].hostPort", "workloads.host"},
		{"secret-env", "", "", "spec.secret_env[0]", "admin-db"},
		{"secret-file", "", "", "spec.secret_files[0]", "admin-db"},
	}
	for _, tc := range refused {
		t.Run("operator "+tc.name, func(t *testing.T) {
			name := "priv-" + tc.name + "-" + c.nodeID
			m := c.smallManifest(name, tc.extraTop, tc.extraContainer, "10m", "8Mi")
			switch tc.name {
			case "secret-env":
				m += "  secretEnv: [{name: DB_PASSWORD, secret: admin-db, key: password}]\n"
			case "secret-file":
				m += "  secretFiles: [{secret: admin-db, key: password, path: /run/db/password}]\n"
			}
			a, err := c.do(t, operator, http.MethodPost, "/v1/workloads", []byte(m))
			if err != nil {
				t.Fatal(err)
			}
			if a.code != http.StatusForbidden || !strings.Contains(a.errMsg, tc.field) || !strings.Contains(a.errMsg, tc.want) {
				t.Fatalf("operator's %s: gateway answered %d %q, want 403 naming %s and %s", tc.name, a.code, a.errMsg, tc.field, tc.want)
			}
			t.Logf("refused: %s", a.errMsg)
			c.assertRefused(t, name)
		})
	}

	t.Run("operator compose host network", func(t *testing.T) {
		name := "priv-compose-" + c.nodeID
		m := "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: compose\n  compose:\n    inline: |\n" +
			"      services:\n        web: {image: " + c.image + ", network_mode: host}\n"
		a, err := c.do(t, operator, http.MethodPost, "/v1/workloads", []byte(m))
		if err != nil {
			t.Fatal(err)
		}
		field := "spec.compose.services.web.network_mode"
		if a.code != http.StatusForbidden || !strings.Contains(a.errMsg, field) || !strings.Contains(a.errMsg, "workloads.host") {
			t.Fatalf("operator's compose with host network: gateway answered %d %q, want 403 naming %s and workloads.host", a.code, a.errMsg, field)
		}
		c.assertRefused(t, name)
	})

	t.Run("refused secret use is audited", func(t *testing.T) {
		a, err := c.do(t, admin, http.MethodGet, "/v1/events?type=audit", nil)
		if err != nil || a.code != http.StatusOK {
			t.Fatalf("audit log: %v %d", err, a.code)
		}
		if !strings.Contains(a.body, `secret.use`) || !strings.Contains(a.body, `denied`) || !strings.Contains(a.body, "admin-db") {
			t.Fatalf("no denied secret.use audit event naming admin-db:\n%.2000s", a.body)
		}
	})

	t.Run("operator may use an allowed secret", func(t *testing.T) {
		name := "priv-allowed-" + c.nodeID
		m := c.smallManifest(name, "", "", "10m", "8Mi") + "  secretEnv: [{name: DB_PASSWORD, secret: team-db, key: password}]\n"
		a, err := c.do(t, operator, http.MethodPost, "/v1/workloads", []byte(m))
		if err != nil || (a.code != http.StatusCreated && a.code != http.StatusOK) {
			t.Fatalf("operator's workload with an allowed secret: %v %d %s", err, a.code, a.body)
		}
		c.waitFor(name+" running", 60*time.Second, func() bool {
			v, ok := c.getWorkload(name)
			return ok && v.Status.State == "RUNNING"
		})
	})

	t.Run("node policy refuses an admin's privileged workload", func(t *testing.T) {
		name := "priv-admin-" + c.nodeID
		m := c.smallManifest(name, "", "    privileged: true\n", "10m", "8Mi")
		a, err := c.do(t, admin, http.MethodPost, "/v1/workloads", []byte(m))
		if err != nil || (a.code != http.StatusCreated && a.code != http.StatusOK) {
			t.Fatalf("admin's privileged workload: %v %d %s", err, a.code, a.body)
		}
		c.waitFor(name+" refused by policy", 60*time.Second, func() bool {
			out, err := c.ctl("describe", "workload", name)
			return err == nil && strings.Contains(strings.ToUpper(out), "POLICY_DENIED")
		})
		if n := len(c.containers(name)); n != 0 {
			t.Fatalf("%d containers run for a workload the node's policy refuses", n)
		}
	})

	t.Run("two workloads asking for one host port", func(t *testing.T) {
		port := freePort(t)
		ports := fmt.Sprintf("    ports: [{containerPort: 8080, hostPort: %d, hostIP: 127.0.0.1}]\n", port)
		first, second := "port-a-"+c.nodeID, "port-b-"+c.nodeID
		for _, name := range []string{first, second} {
			a, err := c.do(t, admin, http.MethodPost, "/v1/workloads", []byte(c.smallManifest(name, "", ports, "10m", "8Mi")))
			if err != nil || (a.code != http.StatusCreated && a.code != http.StatusOK) {
				t.Fatalf("apply %s: %v %d %s", name, err, a.code, a.body)
			}
			if name == first {
				c.waitFor(first+" running", 60*time.Second, func() bool {
					v, ok := c.getWorkload(first)
					return ok && v.Status.State == "RUNNING"
				})
			}
		}
		// One node: the second stays pending with the conflict as its
		// reason instead of failing at start.
		c.waitFor(second+" pending with PORT_CONFLICT", 30*time.Second, func() bool {
			v, ok := c.getWorkload(second)
			return ok && v.Status.State == "PENDING" && strings.Contains(v.Status.Reason, "PORT_CONFLICT")
		})
		if n := len(c.containers(second)); n != 0 {
			t.Fatalf("%d containers started for a workload whose host port is taken", n)
		}
	})

	t.Run("the store answers no certificate of the cluster's CA", func(t *testing.T) {
		dir := t.TempDir()
		pkiFile := func(n string) string { return filepath.Join(c.pkiDir, n) }
		p := c.start("scheduler-embedded", "scheduler", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"--data-dir", dir, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"--ca", pkiFile("ca.crt"), "--cert", pkiFile("scheduler.crt"), "--key", pkiFile("scheduler.key"))
		var endpoint string
		c.waitFor("embedded etcd ready", 60*time.Second, func() bool {
			for _, line := range strings.Split(p.output(), "\n") {
				var rec struct {
					Msg       string   `json:"msg"`
					Endpoints []string `json:"endpoints"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "embedded etcd ready" && len(rec.Endpoints) == 1 {
					endpoint = rec.Endpoints[0]
					return true
				}
			}
			return false
		})
		put := func(url string, certs ...tls.Certificate) error {
			var cfg *tls.Config
			if strings.HasPrefix(url, "https://") {
				// The client certificate is under test, not the server's.
				cfg = &tls.Config{InsecureSkipVerify: true, Certificates: certs}
			}
			cli, err := store.Connect([]string{url}, cfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err = cli.Put(ctx, "/persys/nodes/intruder", "x")
			return err
		}
		if !strings.HasPrefix(endpoint, "https://127.0.0.1:") {
			t.Fatalf("embedded etcd endpoint %q, want https on loopback", endpoint)
		}
		if err := put("http://" + strings.TrimPrefix(endpoint, "https://")); err == nil {
			t.Error("a plaintext client wrote to the store")
		}
		if err := put(endpoint); err == nil {
			t.Error("a TLS client without a certificate wrote to the store")
		}
		ca, err := pki.LoadCA(c.pkiDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, cert := range []tls.Certificate{c.adminCert(t), issued(t, ca, "olga", pki.RoleOperator), issued(t, ca, c.nodeID, pki.RoleAgent)} {
			if err := put(endpoint, cert); err == nil {
				t.Errorf("a certificate of the cluster's CA (%s) wrote to the store", cert.Leaf.Subject.CommonName)
			}
		}
		own, err := tls.LoadX509KeyPair(filepath.Join(dir, "store-pki", "etcd.crt"), filepath.Join(dir, "store-pki", "etcd.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := put(endpoint, own); err != nil {
			t.Errorf("the store's own certificate was refused: %v", err)
		}
	})
}
