package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/pki"
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
			return ok && v.Status.State == "ACTUAL_STATE_RUNNING"
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
}
