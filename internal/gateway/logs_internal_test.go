package gateway

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

func TestParseLogQuery(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, query string
		want        logQuery
		field       string
	}{
		{name: "none", query: ""},
		{name: "tail", query: "tail=100", want: logQuery{tail: 100}},
		{name: "tail_bytes", query: "tail_bytes=7&follow=true", want: logQuery{tail: 7, follow: true}},
		{name: "since duration", query: "follow=1&since=5m", want: logQuery{follow: true, since: now.Add(-5 * time.Minute)}},
		{name: "since time", query: "follow=true&since=2026-12-07T11:00:00Z", want: logQuery{follow: true, since: now.Add(-time.Hour)}},
		{name: "service", query: "follow=true&service=db", want: logQuery{follow: true, service: "db"}},
		{name: "bad follow", query: "follow=yes%20please", field: "follow"},
		{name: "negative tail", query: "tail_bytes=-3", field: "tail_bytes"},
		{name: "tail not a number", query: "tail=lots", field: "tail"},
		{name: "since garbage", query: "follow=true&since=last%20tuesday", field: "since"},
		{name: "since negative", query: "follow=true&since=-1h", field: "since"},
		{name: "service too long", query: "follow=true&service=" + strings.Repeat("x", maxServiceName+1), field: "service"},
		{name: "since without follow", query: "since=5m", field: "follow"},
		{name: "service without follow", query: "service=db", field: "follow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/workloads/w/logs?"+tc.query, nil)
			got, err := parseLogQuery(r, now)
			if tc.field != "" {
				var he *httperr.Error
				if !errors.As(err, &he) || he.Code != http.StatusBadRequest || len(he.Fields) != 1 || he.Fields[0].Field != tc.field {
					t.Fatalf("error %v, want a 400 naming %s", err, tc.field)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestFollowCutsOffSlowClient: a client that stops reading is cut off
// once a write blocks past the write timeout, rather than buffered for.
func TestFollowCutsOffSlowClient(t *testing.T) {
	g := &gateway{followWrite: 200 * time.Millisecond}
	chunk := &persysv1.StreamWorkloadLogsResponse{Data: []byte(strings.Repeat("x", 32<<10))}
	var produced int64
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		ended <- g.relayLogs(rc, w, func() (*persysv1.StreamWorkloadLogsResponse, error) {
			produced += int64(len(chunk.Data))
			return chunk, nil
		}, nil)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client reads nothing more.
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "too slow") {
			t.Fatalf("relay ended with %v, want the slow client cut off", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("a client that never reads was not cut off")
	}
	if produced > 256<<20 {
		t.Fatalf("%d bytes relayed to a client that reads nothing", produced)
	}
}
