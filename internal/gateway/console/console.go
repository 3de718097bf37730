// Package console owns the web console the gateway serves at /ui/: the
// server-rendered page shells (html/template), the plain JavaScript and
// CSS they load (embedded, nothing fetched from elsewhere), and the
// login at /ui/login, where an API token is exchanged for a session.
//
// The console holds no data of its own: its pages call the gateway's REST
// API from the browser, same origin, so every read and every action is
// authorized by the gateway's own permission table. The gateway must
// authenticate each request before a console handler runs (Config.Caller)
// and must gate each route of Routes with its permission; it
// authenticates the session cookie (CookieName), whose value is the
// session's API token, and refuses a state-changing request of a cookie
// session without its CSRFToken in X-CSRF-Token (package authn does both
// for it). Sessions, which issues and revokes the session tokens, is the
// gateway's.
package console

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/pki"
)

// CookieName is the session cookie. The __Host- prefix makes browsers
// refuse it unless it is Secure, host-only and for Path=/.
const CookieName = "__Host-persys_session"

// CSRFHeader carries a cookie session's CSRF token on every
// state-changing request.
const CSRFHeader = "X-CSRF-Token"

// Authentication methods of a Caller (package authn's spelling).
const (
	MethodCertificate = "certificate"
	MethodToken       = "token"
	MethodSession     = "session"
)

//go:embed assets
var assets embed.FS

// Caller is who the gateway authenticated for one request.
type Caller struct {
	User   string
	Role   pki.Role
	Method string
	// TokenID names the API token (MethodToken and MethodSession).
	TokenID string
	// CSRF is the session's CSRF token (MethodSession only).
	CSRF string
}

// Config wires the console to the gateway.
type Config struct {
	// Caller returns the authenticated caller of r, nil when none.
	Caller func(r *http.Request) *Caller
	// Sessions issues and revokes session tokens; required.
	Sessions Sessions
}

// Route is one console route: the gateway registers it as "METHOD path"
// behind the permission permissions.go names for it.
type Route struct {
	Method, Path string
	Handler      func(w http.ResponseWriter, r *http.Request) (int, error)
}

// Console serves the pages.
type Console struct {
	cfg    Config
	pages  map[string]*template.Template
	static http.Handler
}

// New parses the embedded templates; it panics on a missing Caller or
// Sessions, or a broken template (programming errors).
func New(cfg Config) *Console {
	if cfg.Caller == nil || cfg.Sessions == nil {
		panic("console: Config.Caller and Config.Sessions are required")
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}}
	for _, p := range pageNames {
		c.pages[p] = template.Must(template.ParseFS(assets, "assets/templates/layout.html", "assets/templates/"+p+".html"))
	}
	sub, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err)
	}
	c.static = http.StripPrefix("/ui/static/", http.FileServerFS(sub))
	return c
}

var pageNames = []string{"summary", "nodes", "workloads", "workload", "events", "services", "service", "login"}

// Routes lists the console's routes.
func (c *Console) Routes() []Route {
	return []Route{
		{"GET", "/ui/{$}", c.page("summary", "Cluster")},
		{"GET", "/ui/nodes", c.page("nodes", "Nodes")},
		{"GET", "/ui/workloads", c.page("workloads", "Workloads")},
		{"GET", "/ui/workloads/{name}", c.page("workload", "Workload")},
		{"GET", "/ui/events", c.page("events", "Events")},
		{"GET", "/ui/services", c.page("services", "Services")},
		{"GET", "/ui/services/{name}", c.page("service", "Service")},
		{"GET", "/ui/login", c.loginPage},
		{"POST", "/ui/login", c.login},
		{"POST", "/ui/logout", c.logout},
		{"GET", "/ui/static/", c.serveStatic},
	}
}

// pageData is what a page shell is rendered from; the browser fetches
// the rest.
type pageData struct {
	Title, Page, Name  string
	User, Role, Method string
	CSRF               string
	// What the caller may do: buttons for anything else are not drawn.
	WriteWorkloads, WriteNodes, Logs, WriteServices bool
}

func (c *Console) page(name, title string) func(http.ResponseWriter, *http.Request) (int, error) {
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		d := pageData{Title: title, Page: name, Name: r.PathValue("name")}
		if who := c.cfg.Caller(r); who != nil {
			d.User, d.Role, d.Method, d.CSRF = who.User, string(who.Role), who.Method, who.CSRF
			d.WriteWorkloads = authz.RoleHas(who.Role, authz.WorkloadsWrite)
			d.WriteNodes = authz.RoleHas(who.Role, authz.NodesWrite)
			d.Logs = authz.RoleHas(who.Role, authz.WorkloadsLogs)
			d.WriteServices = authz.RoleHas(who.Role, authz.ServicesWrite)
		}
		if d.Name != "" {
			d.Title += " " + d.Name
		}
		return c.render(w, name, d)
	}
}

func (c *Console) render(w http.ResponseWriter, name string, d pageData) (int, error) {
	var b strings.Builder
	if err := c.pages[name].ExecuteTemplate(&b, "layout", d); err != nil {
		return 0, fmt.Errorf("console: rendering %s: %w", name, err)
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return http.StatusOK, nil
}

// securityHeaders: only the console's own scripts and styles run, and no
// other site may frame it.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) (int, error) {
	d := pageData{Title: "Log in", Page: "login"}
	if who := c.cfg.Caller(r); who != nil {
		d.User, d.Role, d.Method = who.User, string(who.Role), who.Method
	}
	return c.render(w, "login", d)
}

// login exchanges the API token of the request's Authorization header,
// already validated by the gateway, for a session cookie.
func (c *Console) login(w http.ResponseWriter, r *http.Request) (int, error) {
	who := c.cfg.Caller(r)
	if who == nil || who.Method != MethodToken {
		return writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "Authorization", "log in by sending an API token as \"Authorization: Bearer psy_...\" (a client certificate needs no login)"))
	}
	sess, err := c.cfg.Sessions.Open(r.Context(), who, DefaultSessionTTL)
	if err != nil {
		return 0, err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess.Token, Path: "/", Expires: sess.Expires,
		MaxAge: int(time.Until(sess.Expires) / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return writeJSON(w, http.StatusOK, map[string]any{"user": who.User, "role": who.Role, "expires": sess.Expires.UTC().Format(time.RFC3339)})
}

// logout tells the browser to drop the cookie and revokes the session's
// token (the gateway checked its CSRF token), so that no gateway admits
// it again; a revocation that failed is reported.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) (int, error) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	if who := c.cfg.Caller(r); who != nil && who.Method == MethodSession {
		if err := c.cfg.Sessions.Close(r.Context(), who.TokenID); err != nil {
			return 0, err
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"loggedOut": true})
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) (int, error) {
	securityHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-cache")
	sw := &codeWriter{ResponseWriter: w}
	c.static.ServeHTTP(sw, r)
	return sw.code, nil
}

// codeWriter remembers the status the file server wrote.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

// errorBody has the shape of the gateway's error answers.
func errorBody(code int, field, msg string) map[string]any {
	e := map[string]any{"code": code, "message": msg}
	if field != "" {
		e["fields"] = []map[string]string{{"field": field, "reason": msg}}
	}
	return map[string]any{"error": e}
}

func writeJSON(w http.ResponseWriter, code int, v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("console: encoding answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return code, nil
}
