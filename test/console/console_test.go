// Package console tests the web console at /ui/ in a real headless
// Chromium (chromedp) against a real `persys dev` (Docker runtime, real
// mTLS): token login, apply from the form, a workload reaching RUNNING
// and its log without reload, delete, a viewer without buttons and
// refused server-side, CSRF, logout. Screenshots go to $PERSYS_ARTIFACTS
// (default: a temporary folder).
package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// waitLong bounds every wait for the page: generous, the test asserts
// what happens, never how fast.
const waitLong = 2 * time.Minute

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("PERSYS_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Chromium; each returned tab factory opens a tab
// in a fresh browser context (its own cookies).
func browser(t *testing.T) func() context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		need.Missing(t, "chromium is not installed (scripts/install-deps.sh installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		// The gateway's certificate is signed by the cluster's own CA,
		// which this throwaway browser profile does not trust.
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	if err := chromedp.Do(root); err != nil {
		cancelRoot()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancelRoot(); cancelAlloc() })
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("new browser context: %v", err)
		}
		failOnScriptErrors(t, ctx)
		return ctx
	}
}

// failOnScriptErrors fails the test, at its end, for every uncaught
// exception of the console's JavaScript in the tab.
func failOnScriptErrors(t *testing.T, ctx context.Context) {
	var mu sync.Mutex
	var seen []string
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			t.Errorf("uncaught JavaScript exception: %s", s)
		}
	})
}

// do runs steps with a generous bound, failing the test with what.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// until polls a JavaScript predicate until it is truthy.
func until(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	do(t, ctx, "waiting for "+what, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(waitLong), chromedp.WithPollingInterval(100*time.Millisecond)))
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", filepath.Join(dir, name))
}

// login opens /ui/ (which sends a browser without credentials to the
// login page) and logs in with token.
func login(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	do(t, ctx, "opening the console", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := eval[string](t, ctx, `location.pathname`); loc != "/ui/login" {
		t.Fatalf("without credentials /ui/ went to %s, want /ui/login", loc)
	}
	do(t, ctx, "logging in", chromedp.SetValue(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.CSS("#summary .card")))
}

func sessionCookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "__Host-persys_session" {
			return c
		}
	}
	t.Fatalf("no session cookie after login; cookies %v", res.Cookies)
	return nil
}

// fetchStatus makes a request from the page (its session cookie goes
// along) and returns the HTTP status; csrf "" sends no CSRF header.
func fetchStatus(t *testing.T, ctx context.Context, method, path string, withCSRF bool) int {
	t.Helper()
	hdr := "{}"
	if withCSRF {
		hdr = `{"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}`
	}
	return eval[int](t, ctx, fmt.Sprintf(`fetch(%q, {method: %q, headers: %s, credentials: "same-origin"}).then(r => r.status)`, path, method, hdr))
}

func TestConsole(t *testing.T) {
	newTab := browser(t)
	d := startDev(t)
	base := "https://" + d.gw
	art := artifactsDir(t)
	adminTok, viewerTok := d.token("console-admin", "admin"), d.token("console-viewer", "viewer")
	name := fmt.Sprintf("console-%d", time.Now().UnixNano()%1_000_000)
	mark := "hello-from-" + name

	admin := newTab()
	login(t, admin, base, adminTok)
	ck := sessionCookie(t, admin, base)
	if !ck.HTTPOnly || !ck.Secure || ck.SameSite != network.CookieSameSiteStrict || ck.Path != "/" {
		t.Errorf("session cookie: httpOnly %v secure %v sameSite %q path %q; want HttpOnly, Secure, Strict, /", ck.HTTPOnly, ck.Secure, ck.SameSite, ck.Path)
	}
	if left := time.Until(time.Unix(int64(ck.Expires), 0)); left <= 0 || left > 31*time.Minute {
		t.Errorf("session cookie expires in %s, want a short expiry (30 min)", left)
	}
	if v := eval[bool](t, admin, `document.cookie.includes("persys_session")`); v {
		t.Error("the session cookie is readable from JavaScript")
	}

	// Nodes: capacity bars and the admin's buttons.
	do(t, admin, "nodes page", chromedp.Navigate(base+"/ui/nodes"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-node="`+d.nodeID+`"] .bar`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-node="`+d.nodeID+`"] button[data-act="cordon"]`)))
	screenshot(t, admin, art, "nodes.png")

	// An invalid manifest: the field-named errors next to the text.
	do(t, admin, "workloads page", chromedp.Navigate(base+"/ui/workloads"), chromedp.WaitVisible(chromedp.ID("manifest")))
	eval[bool](t, admin, `window.__sameDocument = true`)
	bad := "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: container\n  container: {}\n  resources: {cpu: lots, memory: 32Mi}\n"
	do(t, admin, "applying an invalid manifest", chromedp.SetValue(chromedp.ID("manifest"), bad), chromedp.Click(chromedp.ID("apply-btn")),
		chromedp.WaitVisible(chromedp.CSS("#apply-errors li[data-field]")))
	errs := eval[string](t, admin, `document.querySelector("#apply-errors").innerText`)
	if !strings.Contains(errs, "spec.container.image") || !strings.Contains(errs, "resources.cpu") {
		t.Errorf("apply errors %q: want the fields spec.container.image and …resources.cpu named", errs)
	}
	screenshot(t, admin, art, "apply-error.png")

	// A valid one: the row appears and reaches RUNNING without a reload.
	good := fmt.Sprintf("kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container:\n    image: %s\n    env: {GREETING: %s, TARGET: \"http://127.0.0.1:9/\"}\n  resources: {cpu: 50m, memory: 32Mi}\n", name, d.image, mark)
	do(t, admin, "applying a manifest", chromedp.SetValue(chromedp.ID("manifest"), good), chromedp.Click(chromedp.ID("apply-btn")))
	until(t, admin, name+" RUNNING in the list", `document.querySelector('tr[data-name="`+name+`"] .state.RUNNING') !== null`)
	if !eval[bool](t, admin, `window.__sameDocument === true`) {
		t.Error("the workloads page reloaded; it must update live")
	}

	// The workload page: RUNNING, its log tail live.
	do(t, admin, "workload page", chromedp.Navigate(base+"/ui/workloads/"+name), chromedp.WaitVisible(chromedp.ID("logs")))
	eval[bool](t, admin, `window.__sameDocument = true`)
	until(t, admin, "RUNNING on the workload page", `document.querySelector('#state.RUNNING') !== null`)
	until(t, admin, "the greeting in the log", `document.querySelector('#logs').textContent.includes(`+fmt.Sprintf("%q", "greeting: "+mark)+`)`)
	until(t, admin, "new log lines", `document.querySelector('#logs').textContent.split("poll error").length > 3`)
	screenshot(t, admin, art, "workload.png")
	if !eval[bool](t, admin, `window.__sameDocument === true`) {
		t.Error("the workload page reloaded; it must update live")
	}

	// The other pages render: the summary counts it, the events page
	// lists its creation, the services page answers.
	do(t, admin, "summary page", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#summary .card .bar")))
	do(t, admin, "events page", chromedp.Navigate(base+"/ui/events"))
	until(t, admin, "the workload's events listed", `[...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes("`+name+`") && r.textContent.includes("Running"))`)
	do(t, admin, "services page", chromedp.Navigate(base+"/ui/services"))
	until(t, admin, "the services table", `document.querySelector('#services tbody').textContent.includes("No services.")`)

	// A POST of the admin's own session without its CSRF token: 403.
	if code := fetchStatus(t, admin, "POST", "/v1/nodes/"+d.nodeID+"/cordon", false); code != http.StatusForbidden {
		t.Errorf("POST without X-CSRF-Token from a session: %d, want 403", code)
	}
	if code := fetchStatus(t, admin, "POST", "/v1/workloads/"+name+"/retry", true); code >= 400 && code != http.StatusConflict {
		t.Errorf("POST with the session's CSRF token: %d, want it admitted", code)
	}

	// Delete from the list (two clicks: arm, confirm); the row goes.
	do(t, admin, "workloads page", chromedp.Navigate(base+"/ui/workloads"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="`+name+`"] button[data-act="delete"]`)))
	eval[bool](t, admin, `window.__sameDocument = true`)
	del := chromedp.CSS(`tr[data-name="` + name + `"] button[data-act="delete"]`)
	do(t, admin, "arming delete", chromedp.Click(del), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="`+name+`"] button.armed`)))
	do(t, admin, "confirming delete", chromedp.Click(chromedp.CSS(`tr[data-name="`+name+`"] button.armed`)))
	until(t, admin, name+" gone from the list", `document.querySelector('#workloads tbody tr') !== null && document.querySelector('tr[data-name="`+name+`"]') === null`)
	if !eval[bool](t, admin, `window.__sameDocument === true`) {
		t.Error("the workloads page reloaded after delete")
	}

	viewerChecks(t, newTab(), d, base, viewerTok)

	// Logout ends the session on the server: the old cookie is refused.
	do(t, admin, "logging out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("token")))
	req, _ := http.NewRequest("GET", base+"/v1/workloads", nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	resp, err := d.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the cookie after logout: %d, want 401", resp.StatusCode)
	}
	do(t, admin, "opening the console after logout", chromedp.Navigate(base+"/ui/workloads"), chromedp.WaitVisible(chromedp.ID("token")))
}

// viewerChecks: a viewer's session sees the pages without any action
// button, and its forged actions (with its valid CSRF token) get 403.
func viewerChecks(t *testing.T, tab context.Context, d *dev, base, token string) {
	t.Helper()
	login(t, tab, base, token)
	if role := eval[string](t, tab, `document.querySelector("#role").textContent`); role != "viewer" {
		t.Fatalf("viewer session shows role %q", role)
	}
	do(t, tab, "viewer nodes page", chromedp.Navigate(base+"/ui/nodes"), chromedp.WaitVisible(chromedp.CSS(`tr[data-node="`+d.nodeID+`"] .bar`)))
	if n := eval[int](t, tab, `document.querySelectorAll("button.action").length`); n != 0 {
		t.Errorf("viewer sees %d action buttons on the nodes page", n)
	}
	do(t, tab, "viewer workloads page", chromedp.Navigate(base+"/ui/workloads"), chromedp.WaitVisible(chromedp.CSS(`#workloads tbody tr`)))
	if n := eval[int](t, tab, `document.querySelectorAll("button.action, #apply-btn, #manifest").length`); n != 0 {
		t.Errorf("viewer sees %d action buttons or the apply form on the workloads page", n)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/nodes/" + d.nodeID + "/cordon"},
		{"POST", "/v1/nodes/" + d.nodeID + "/drain"},
		{"DELETE", "/v1/workloads/anything"},
		{"POST", "/v1/workloads/anything/retry"},
		{"POST", "/v1/manifests"},
	} {
		if code := fetchStatus(t, tab, c.method, c.path, true); code != http.StatusForbidden {
			t.Errorf("viewer session %s %s with its CSRF token: %d, want 403", c.method, c.path, code)
		}
	}
}
