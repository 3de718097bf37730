package console

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/persys-dev/compute/internal/gateway/console"
)

// followPage loads the console's real script on a bare page.
const followPage = `<!doctype html><html><head><meta name="csrf-token" content=""></head>
<body data-page="none"><pre id="logs"></pre><span id="note"></span><script src="/ui/static/console.js"></script></body></html>`

// The console's follow() helper against the answers the gateway may give:
// an NDJSON stream (objects split across writes, then the stream ends and
// is resumed after the last change read), a position too old to resume
// (410: listed again) and a plain list.
func TestFollowReadsStreamsAndLists(t *testing.T) {
	newTab := browser(t)
	c := console.New(console.Config{Caller: func(*http.Request) *console.Caller { return nil }, Sessions: noSessions{}})
	mux := http.NewServeMux()
	for _, r := range c.Routes() {
		if r.Path == "/ui/static/" {
			mux.HandleFunc("GET /ui/static/", func(w http.ResponseWriter, req *http.Request) { _, _ = r.Handler(w, req) })
		}
	}
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(followPage))
	})
	var (
		mu      sync.Mutex
		queries []string // of /stream, in the order asked
	)
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		f := w.(http.Flusher)
		if r.URL.Query().Has("since") {
			// A resumed stream: the changes missed, then a bookmark.
			_, _ = w.Write([]byte(`{"type":"PUT","revision":8,"index":1,"workload":{"workload":{"name":"c"}}}` + "\n" + `{"type":"BOOKMARK","revision":8}` + "\n"))
			return
		}
		for _, part := range []string{
			`{"type":"SNAPSHOT","revision":5,"workload":{"workload":{"name":"a"}}}` + "\n" + `{"type":"BOOKM`,
			`ARK","revision":5}` + "\n",
			`{"type":"PUT","revision":6,"index":0,"workload":{"workload":{"name":"b"}}}` + "\n\n",
			`{"type":"DELETE","revision":7,"index":0,"workload":{"workload":{"name":"a"}}}`, // last line without newline
		} {
			_, _ = w.Write([]byte(part))
			f.Flush()
			time.Sleep(20 * time.Millisecond) // separate network chunks, not a timing assertion
		}
	})
	mux.HandleFunc("GET /gone", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("since") {
			http.Error(w, `{"error":{"code":410,"message":"position compacted"}}`, http.StatusGone)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = w.Write([]byte(`{"type":"SNAPSHOT","revision":5,"workload":{"workload":{"name":"a"}}}` + "\n" + `{"type":"BOOKMARK","revision":5}` + "\n"))
	})
	mux.HandleFunc("GET /list", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"workloads":[{"workload":{"name":"x"}},{"workload":{"name":"y"}}]}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tab := newTab()
	do(t, tab, "loading the script", chromedp.Navigate(srv.URL+"/page"), chromedp.Poll[chromedp.Void](`typeof follow === "function"`))
	collect := func(url string, n int) []string {
		return eval[[]string](t, tab, `new Promise((resolve) => {
			const got = [];
			follow(`+"`"+url+"`"+`, (ev) => {
				got.push(ev.type + (ev.workload ? ":" + wlName(ev.workload) : ""));
				if (got.length === `+strconv.Itoa(n)+`) resolve(got.slice());
			}, "workloads", "workload");
		})`)
	}
	want := []string{"RESET", "SNAPSHOT:a", "BOOKMARK", "PUT:b", "DELETE:a", "PUT:c", "BOOKMARK", "PUT:c"}
	if got := collect(srv.URL+"/stream?watch=true", len(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("stream: got %v, want %v (a reconnect resumes after the last change, without a RESET)", got, want)
	}
	mu.Lock()
	asked := slices.Clone(queries[:3])
	mu.Unlock()
	if wantQ := []string{"watch=true", "watch=true&since=7&since_index=0", "watch=true&since=8"}; !reflect.DeepEqual(asked, wantQ) {
		t.Errorf("stream queries %q, want %q", asked, wantQ)
	}
	want = []string{"RESET", "SNAPSHOT:a", "BOOKMARK", "RESET", "SNAPSHOT:a"}
	if got := collect(srv.URL+"/gone", len(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("position gone: got %v, want %v (410 lists again, with a RESET)", got, want)
	}
	want = []string{"RESET", "SNAPSHOT:x", "SNAPSHOT:y", "BOOKMARK", "RESET", "SNAPSHOT:x"}
	if got := collect(srv.URL+"/list", len(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("plain list: got %v, want %v (fetched again)", got, want)
	}
}

// noSessions: the bare page logs no one in.
type noSessions struct{}

func (noSessions) Open(context.Context, *console.Caller, time.Duration) (console.Session, error) {
	return console.Session{}, errors.New("no logins here")
}
func (noSessions) Close(context.Context, string) error { return nil }
