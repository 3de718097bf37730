// Package console tests the web console at /ui/ in a real headless
// Chromium (chromedp) against a real `persys dev` (Docker runtime, real
// mTLS): token login, apply from the form, a workload reaching RUNNING
// and its log without reload, delete, a viewer without buttons and
// refused server-side, CSRF, logout. Screenshots go to $PERSYS_ARTIFACTS
// (default: a temporary folder). follow_test.go checks the pages' stream
// reader on both answers a watch URL may give (NDJSON or a plain list).
package console

import (
	"context"
	"errors"
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
// in a fresh browser context (its own cookies). extra adds allocator
// options (a HOME of its own, for a client certificate).
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) func() context.Context {
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
	opts = append(opts, extra...)
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

// open loads url in the tab, waits until the page's script has wired its
// handlers (console.js marks body[data-ready] last; a click before that
// would do nothing), then runs then. Chromium aborts a load, or one of its
// scripts, with net::ERR_NETWORK_CHANGED when a network interface comes or
// goes, which the engine does on this host whenever a container starts or
// stops: a load that failed so, or whose script never got ready, is tried
// again, logged, at most openTries times.
func open(t *testing.T, tab context.Context, what, url string, then ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for try := 1; ; try++ {
		c, cancel := context.WithTimeout(tab, scriptWait)
		err := chromedp.Do(c, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("body[data-ready]")))
		cancel()
		if err == nil {
			break
		}
		aborted := strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") || errors.Is(err, context.DeadlineExceeded)
		if !aborted || try == openTries {
			t.Fatalf("%s: load %d of %s: %v", what, try, url, err)
		}
		t.Logf("%s: loading %s: %v; loading it again", what, url, err)
	}
	if len(then) > 0 {
		do(t, tab, what, then...)
	}
}

const (
	openTries  = 5
	scriptWait = 30 * time.Second
)

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
	open(t, ctx, "opening the console", base+"/ui/", chromedp.WaitVisible(chromedp.ID("token")))
	if loc := eval[string](t, ctx, `location.pathname`); loc != "/ui/login" {
		t.Fatalf("without credentials /ui/ went to %s, want /ui/login", loc)
	}
	do(t, ctx, "logging in", chromedp.WaitEnabled(chromedp.ID("login-btn")), chromedp.SetValue(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-btn")),
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

// run is one browser test against one dev cluster.
type run struct {
	t          *testing.T
	d          *dev
	base, art  string
	name, mark string
}

func TestConsole(t *testing.T) {
	newTab := browser(t)
	d := startDev(t)
	name := fmt.Sprintf("console-%d", time.Now().UnixNano()%1_000_000)
	r := &run{t: t, d: d, base: "https://" + d.gw, art: artifactsDir(t), name: name, mark: "hello-from-" + name}
	adminTok, viewerTok := d.token("console-admin", "admin"), d.token("console-viewer", "viewer")

	admin := newTab()
	login(t, admin, r.base, adminTok)
	ck := r.checkCookie(admin)
	r.nodesPage(admin)
	r.applyFromForm(admin)
	r.workloadPage(admin)
	r.otherPages(admin)
	r.csrf(admin)
	r.deleteFromList(admin)
	viewerChecks(t, newTab(), d, r.base, viewerTok)
	r.logout(admin, ck)
}

// checkCookie: the session cookie is HttpOnly, Secure, SameSite=Strict,
// for Path=/ and short-lived.
func (r *run) checkCookie(tab context.Context) *network.Cookie {
	t := r.t
	ck := sessionCookie(t, tab, r.base)
	if !ck.HTTPOnly || !ck.Secure || ck.SameSite != network.CookieSameSiteStrict || ck.Path != "/" {
		t.Errorf("session cookie: httpOnly %v secure %v sameSite %q path %q; want HttpOnly, Secure, Strict, /", ck.HTTPOnly, ck.Secure, ck.SameSite, ck.Path)
	}
	if left := time.Until(time.Unix(int64(ck.Expires), 0)); left <= 0 || left > 31*time.Minute {
		t.Errorf("session cookie expires in %s, want a short expiry (30 min)", left)
	}
	if v := eval[bool](t, tab, `document.cookie.includes("persys_session")`); v {
		t.Error("the session cookie is readable from JavaScript")
	}
	return ck
}

// nodesPage: capacity bars and the admin's buttons.
func (r *run) nodesPage(tab context.Context) {
	row := `tr[data-node="` + r.d.nodeID + `"]`
	open(r.t, tab, "nodes page", r.base+"/ui/nodes",
		chromedp.WaitVisible(chromedp.CSS(row+` .bar`)), chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="cordon"]`)))
	screenshot(r.t, tab, r.art, "nodes.png")
	// Cordon and uncordon from the page; the row follows.
	do(r.t, tab, "cordon", chromedp.Click(chromedp.CSS(row+` button[data-act="cordon"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="uncordon"]`)))
	until(r.t, tab, "the row saying cordoned", `document.querySelector('`+row+`').textContent.includes("cordoned")`)
	do(r.t, tab, "uncordon", chromedp.Click(chromedp.CSS(row+` button[data-act="uncordon"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="cordon"]`)))
}

// sameDocument marks the page, so that noReload can tell it was not
// reloaded since.
func sameDocument(t *testing.T, tab context.Context) {
	eval[bool](t, tab, `window.__sameDocument = true`)
}

func noReload(t *testing.T, tab context.Context, what string) {
	t.Helper()
	if !eval[bool](t, tab, `window.__sameDocument === true`) {
		t.Errorf("the %s reloaded; it must update live", what)
	}
}

// applyFromForm: an invalid manifest shows its field-named errors next
// to the text; a valid one appears and reaches RUNNING without a reload.
func (r *run) applyFromForm(tab context.Context) {
	t := r.t
	open(t, tab, "workloads page", r.base+"/ui/workloads", chromedp.WaitVisible(chromedp.ID("manifest")))
	sameDocument(t, tab)
	bad := "kind: Workload\nmetadata: {name: " + r.name + "}\nspec:\n  type: container\n  container: {}\n  resources: {cpu: lots, memory: 32Mi}\n"
	do(t, tab, "applying an invalid manifest", chromedp.SetValue(chromedp.ID("manifest"), bad), chromedp.Click(chromedp.ID("apply-btn")),
		chromedp.WaitVisible(chromedp.CSS("#apply-errors li[data-field]")))
	errs := eval[string](t, tab, `document.querySelector("#apply-errors").innerText`)
	if !strings.Contains(errs, "spec.container.image") || !strings.Contains(errs, "resources.cpu") {
		t.Errorf("apply errors %q: want the fields spec.container.image and …resources.cpu named", errs)
	}
	screenshot(t, tab, r.art, "apply-error.png")

	good := fmt.Sprintf("kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container:\n    image: %s\n    env: {GREETING: %s, TARGET: \"http://127.0.0.1:9/\"}\n  resources: {cpu: 50m, memory: 32Mi}\n", r.name, r.d.image, r.mark)
	do(t, tab, "applying a manifest", chromedp.SetValue(chromedp.ID("manifest"), good), chromedp.Click(chromedp.ID("apply-btn")))
	until(t, tab, r.name+" RUNNING in the list", `document.querySelector('tr[data-name="`+r.name+`"] .state.RUNNING') !== null`)
	noReload(t, tab, "workloads page")
}

// workloadPage: RUNNING, its log tail growing and a retry, without a
// reload.
func (r *run) workloadPage(tab context.Context) {
	t := r.t
	open(t, tab, "workload page", r.base+"/ui/workloads/"+r.name, chromedp.WaitVisible(chromedp.ID("logs")))
	sameDocument(t, tab)
	until(t, tab, "RUNNING on the workload page", `document.querySelector('#state.RUNNING') !== null`)
	until(t, tab, "the greeting in the log", `document.querySelector('#logs').textContent.includes(`+fmt.Sprintf("%q", "greeting: "+r.mark)+`)`)
	until(t, tab, "new log lines", `document.querySelector('#logs').textContent.split("poll error").length > 3`)
	screenshot(t, tab, r.art, "workload.png")
	// Retry from the page: the answer in the banner, the event in the
	// page's live events table.
	do(t, tab, "retry", chromedp.Click(chromedp.ID("retry-btn")))
	until(t, tab, "the retry's answer", `document.querySelector('#banner').textContent === "Retry: done"`)
	until(t, tab, "the RetryRequested event", `[...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes("RetryRequested"))`)
	noReload(t, tab, "workload page")
}

// otherPages: the summary counts, the events page lists the workload's
// events, the services page answers.
func (r *run) otherPages(tab context.Context) {
	t := r.t
	open(t, tab, "summary page", r.base+"/ui/", chromedp.WaitVisible(chromedp.CSS("#summary .card .bar")))
	open(t, tab, "events page", r.base+"/ui/events")
	until(t, tab, "the workload's events listed", `[...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes("`+r.name+`") && r.textContent.includes("Running"))`)
	open(t, tab, "services page", r.base+"/ui/services")
	until(t, tab, "the services table", `document.querySelector('#services tbody').textContent.includes("No services.")`)
}

// csrf: a POST of the admin's own session without its CSRF token is 403;
// with it, admitted.
func (r *run) csrf(tab context.Context) {
	t := r.t
	if code := fetchStatus(t, tab, "POST", "/v1/nodes/"+r.d.nodeID+"/cordon", false); code != http.StatusForbidden {
		t.Errorf("POST without X-CSRF-Token from a session: %d, want 403", code)
	}
	if code := fetchStatus(t, tab, "POST", "/v1/workloads/"+r.name+"/retry", true); code >= 400 && code != http.StatusConflict {
		t.Errorf("POST with the session's CSRF token: %d, want it admitted", code)
	}
}

// deleteFromList: two clicks (arm, confirm), and the row goes live.
func (r *run) deleteFromList(tab context.Context) {
	t := r.t
	row := `tr[data-name="` + r.name + `"]`
	open(t, tab, "workloads page", r.base+"/ui/workloads", chromedp.WaitVisible(chromedp.CSS(row+` button[data-act="delete"]`)))
	sameDocument(t, tab)
	do(t, tab, "arming delete", chromedp.Click(chromedp.CSS(row+` button[data-act="delete"]`)), chromedp.WaitVisible(chromedp.CSS(row+` button.armed`)))
	do(t, tab, "confirming delete", chromedp.Click(chromedp.CSS(row+` button.armed`)))
	until(t, tab, r.name+" gone from the list", `document.querySelector('#workloads tbody tr') !== null && document.querySelector('`+row+`') === null`)
	noReload(t, tab, "workloads page")
}

// logout ends the session on the server: the old cookie is refused.
func (r *run) logout(tab context.Context, ck *network.Cookie) {
	t := r.t
	do(t, tab, "logging out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("token")))
	req, _ := http.NewRequest("GET", r.base+"/v1/workloads", nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	resp, err := r.d.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the cookie after logout: %d, want 401", resp.StatusCode)
	}
	open(t, tab, "opening the console after logout", r.base+"/ui/workloads", chromedp.WaitVisible(chromedp.ID("token")))
}

// viewerChecks: a viewer's session sees the pages without any action
// button, and its forged actions (with its valid CSRF token) get 403.
func viewerChecks(t *testing.T, tab context.Context, d *dev, base, token string) {
	t.Helper()
	login(t, tab, base, token)
	if role := eval[string](t, tab, `document.querySelector("#role").textContent`); role != "viewer" {
		t.Fatalf("viewer session shows role %q", role)
	}
	open(t, tab, "viewer nodes page", base+"/ui/nodes", chromedp.WaitVisible(chromedp.CSS(`tr[data-node="`+d.nodeID+`"] .bar`)))
	if n := eval[int](t, tab, `document.querySelectorAll("button.action").length`); n != 0 {
		t.Errorf("viewer sees %d action buttons on the nodes page", n)
	}
	open(t, tab, "viewer workloads page", base+"/ui/workloads", chromedp.WaitVisible(chromedp.CSS(`#workloads tbody tr`)))
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
