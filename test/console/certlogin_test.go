package console

// Login with the browser's client certificate (mutual TLS), in a real
// headless Chromium. Chromium on Linux takes client certificates from
// the NSS database in $HOME/.pki/nssdb and, headless, can only answer a
// certificate request without a prompt when the AutoSelectCertificateForUrls
// policy names the site. Policies are read only from
// /etc/chromium/policies/managed (the --policy switch is ignored by
// Debian's build), so the test writes one file there, under a name of its
// own, matching only this test's gateway address, and removes it when it
// ends. Each browser runs with a temporary HOME holding one certificate.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// policyDir is where Debian's Chromium reads managed policies.
const policyDir = "/etc/chromium/policies/managed"

func TestConsoleCertificateLogin(t *testing.T) {
	for _, tool := range []string{"certutil", "pk12util", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			need.Missing(t, "%s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	d := startDev(t)
	base := "https://" + d.gw
	autoSelectCertificate(t, base)
	art := artifactsDir(t)

	// A viewer's certificate: logged in without a login page, no action
	// buttons, and an action it forges is refused.
	viewer := browser(t, certificateHome(t, d, "cert-viewer", "viewer"))()
	open(t, viewer, "viewer nodes page", base+"/ui/nodes", chromedp.WaitVisible(chromedp.CSS(`tr[data-node="`+d.nodeID+`"] .bar`)))
	if who := eval[string](t, viewer, `document.querySelector("#who").textContent`); !strings.Contains(who, "cert-viewer") || !strings.Contains(who, "viewer") || !strings.Contains(who, "certificate") {
		t.Fatalf("viewer page says %q, want cert-viewer · viewer · certificate", who)
	}
	if n := eval[int](t, viewer, `document.querySelectorAll("button.action, #logout").length`); n != 0 {
		t.Errorf("viewer sees %d action or logout buttons on the nodes page", n)
	}
	screenshot(t, viewer, art, "cert-viewer-nodes.png")
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/nodes/" + d.nodeID + "/cordon"},
		{"DELETE", "/v1/workloads/anything"},
	} {
		if code := fetchStatus(t, viewer, c.method, c.path, false); code != http.StatusForbidden {
			t.Errorf("viewer certificate %s %s: %d, want 403", c.method, c.path, code)
		}
	}

	// An operator's certificate acts: cordon, uncordon and drain from the
	// page.
	op := browser(t, certificateHome(t, d, "cert-operator", "operator"))()
	row := `tr[data-node="` + d.nodeID + `"]`
	open(t, op, "operator nodes page", base+"/ui/nodes", chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="cordon"]`)))
	if who := eval[string](t, op, `document.querySelector("#who").textContent`); !strings.Contains(who, "cert-operator") || !strings.Contains(who, "certificate") {
		t.Fatalf("operator page says %q", who)
	}
	do(t, op, "cordon", chromedp.Click(chromedp.CSS(row+` button[data-act="cordon"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="uncordon"]`)))
	until(t, op, "the row saying cordoned", `document.querySelector('`+row+`').textContent.includes("cordoned")`)
	screenshot(t, op, art, "cert-operator-cordoned.png")
	do(t, op, "uncordon", chromedp.Click(chromedp.CSS(row+` button[data-act="uncordon"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="cordon"]`)))
	// Drain takes two clicks (arm, confirm) and leaves the node cordoned.
	do(t, op, "arming drain", chromedp.Click(chromedp.CSS(row+` button[data-act="drain"]`)), chromedp.WaitVisible(chromedp.CSS(row+` button.armed`)))
	do(t, op, "confirming drain", chromedp.Click(chromedp.CSS(row+` button.armed`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="uncordon"]`)))
	do(t, op, "uncordon after drain", chromedp.Click(chromedp.CSS(row+` button[data-act="uncordon"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="cordon"]`)))
	// The scheduler recorded who acted: the certificate's user.
	if out := d.ctl("events", "--type", "Audit"); !strings.Contains(out, "cert-operator") {
		t.Errorf("no audit event of cert-operator:\n%s", out)
	}
}

// autoSelectCertificate writes a managed policy that lets Chromium answer
// base's certificate request with the one certificate of its NSS
// database, and removes it (and the folders it made) when the test ends.
func autoSelectCertificate(t *testing.T, base string) {
	t.Helper()
	var made []string
	for dir := policyDir; dir != "/etc"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			made = append([]string{dir}, made...)
		}
	}
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		need.Missing(t, "cannot write Chromium's policy folder %s: %v", policyDir, err)
	}
	rule, err := json.Marshal(map[string]any{"pattern": base, "filter": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"AutoSelectCertificateForUrls": []string{string(rule)}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(policyDir, fmt.Sprintf("persys-test-%d-%s.json", os.Getpid(), strings.NewReplacer(":", "-", ".", "-").Replace(strings.TrimPrefix(base, "https://"))))
	if err := os.WriteFile(file, body, 0o644); err != nil {
		need.Missing(t, "cannot write a Chromium policy: %v", err)
	}
	t.Cleanup(func() {
		_ = os.Remove(file)
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.Remove(made[i]) // only when empty: another policy stays
		}
	})
}

// certificateHome issues a certificate for user with role through the
// gateway (persysctl user issue), imports it with its key into the NSS
// database of a new HOME, and returns the option that starts Chromium
// with that HOME.
func certificateHome(t *testing.T, d *dev, user, role string) chromedp.ExecAllocatorOption {
	t.Helper()
	dir := t.TempDir()
	d.ctl("user", "issue", user, "--role", role, "--out", dir)
	p12 := filepath.Join(dir, user+".p12")
	runTool(t, "openssl", "pkcs12", "-export", "-out", p12, "-in", filepath.Join(dir, user+".crt"),
		"-inkey", filepath.Join(dir, user+".key"), "-name", user, "-passout", "pass:")
	home := t.TempDir()
	db := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	runTool(t, "certutil", "-N", "-d", db, "--empty-password")
	runTool(t, "pk12util", "-i", p12, "-d", db, "-W", "")
	return chromedp.Env("HOME=" + home)
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
