package console

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/persys-dev/compute/internal/gateway/console"
)

// followPage loads the console's real script on a bare page.
const followPage = `<!doctype html><html><head><meta name="csrf-token" content=""></head>
<body data-page="none"><pre id="logs"></pre><span id="note"></span><script src="/ui/static/console.js"></script></body></html>`

// The console's follow() helper against both answers the gateway may
// give: an NDJSON stream (objects split across writes, then the stream
// ends and is reopened) and, until streams land, a plain list.
func TestFollowReadsStreamsAndLists(t *testing.T) {
	newTab := browser(t)
	c := console.New(console.Config{Caller: func(*http.Request) *console.Caller { return nil }, Sessions: console.NewSessions(0, 0)})
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
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		f := w.(http.Flusher)
		for _, part := range []string{
			`{"type":"SNAPSHOT","revision":5,"workload":{"workload":{"name":"a"}}}` + "\n" + `{"type":"BOOKM`,
			`ARK","revision":5}` + "\n",
			`{"type":"PUT","revision":6,"workload":{"workload":{"name":"b"}}}` + "\n\n",
			`{"type":"DELETE","revision":7,"workload":{"workload":{"name":"a"}}}`, // last line without newline
		} {
			_, _ = w.Write([]byte(part))
			f.Flush()
			time.Sleep(20 * time.Millisecond) // separate network chunks, not a timing assertion
		}
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
	want := []string{"RESET", "SNAPSHOT:a", "BOOKMARK", "PUT:b", "DELETE:a", "RESET", "SNAPSHOT:a"}
	if got := collect(srv.URL+"/stream", len(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("stream: got %v, want %v (a reconnect starts with RESET)", got, want)
	}
	want = []string{"RESET", "SNAPSHOT:x", "SNAPSHOT:y", "BOOKMARK", "RESET", "SNAPSHOT:x"}
	if got := collect(srv.URL+"/list", len(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("plain list: got %v, want %v (fetched again)", got, want)
	}
}
