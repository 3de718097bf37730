package release

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/testutil/need"
)

var units = []string{"persys-scheduler.service", "persys-gateway.service", "persys-agent.service"}

// verifyUnit runs systemd-analyze verify on the unit text, its ExecStart
// pointed at bin; any output (a warning too: an unknown key is ignored,
// which would silently drop a hardening line) is a failure.
func verifyUnit(t *testing.T, name, text, bin string) (string, error) {
	t.Helper()
	sa, err := osexec.LookPath("systemd-analyze")
	if err != nil {
		need.Missing(t, "systemd-analyze not installed (scripts/install-deps.sh installs systemd)")
	}
	dir := t.TempDir()
	text = strings.ReplaceAll(text, "/usr/bin/persys ", bin+" ")
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := osexec.Command(sa, "verify", filepath.Join(dir, name)).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestSystemdUnitsVerify(t *testing.T) {
	bin := filepath.Join(dist(t), "persys_"+testVersion+"_linux_amd64")
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join(root(t), "deploy", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if out, err := verifyUnit(t, u, text, bin); err != nil || out != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
		// What the brief of every unit promises.
		for _, want := range []string{"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
			"ReadWritePaths=/var/lib/persys", "CapabilityBoundingSet=\n", "Restart=on-failure",
			"ConditionPathExists=/etc/persys/", "/readyz", "User=persys"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(want))
			}
		}
	}
}

// TestSystemdVerifyCatchesMistakes: the check above can fail — a misspelt
// hardening key and a missing binary are both reported.
func TestSystemdVerifyCatchesMistakes(t *testing.T) {
	bin := filepath.Join(dist(t), "persys_"+testVersion+"_linux_amd64")
	bad := "[Service]\nExecStart=/usr/bin/persys scheduler\nProtectSystm=strict\n"
	if out, err := verifyUnit(t, "bad.service", bad, bin); err == nil && out == "" {
		t.Error("a misspelt key passed systemd-analyze verify silently")
	}
	if out, err := verifyUnit(t, "bad.service", "[Service]\nExecStart=/nonexistent/persys scheduler\n", bin); err == nil && out == "" {
		t.Error("a missing binary passed systemd-analyze verify")
	}
}
