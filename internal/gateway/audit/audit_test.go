package audit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

func TestEvent(t *testing.T) {
	operator := &authn.Identity{User: "olga", Role: pki.RoleOperator, Method: authn.AuthToken, TokenID: "t1"}
	for _, tc := range []struct {
		name, method, path string
		pathValues         map[string]string
		note               func(r *http.Request)
		a                  Answer
		actor, result      string
		workload, node     string
		// msg is the message's parts, in order; nil: not checked.
		msg []string
	}{
		{name: "apply names its workload from the note", method: "POST", path: "/v1/workloads",
			note:  func(r *http.Request) { NoteWorkload(r, "web") },
			a:     Answer{Route: "POST /v1/workloads", Permission: authz.WorkloadsWrite, Caller: operator, Code: 201},
			actor: "olga", result: "201 allowed", workload: "web",
			msg: []string{"via api token t1", "role operator", "needs workloads.write", "from 192.0.2.1:1234"}},
		{name: "delete names its workload from the path", method: "DELETE", path: "/v1/workloads/db",
			pathValues: map[string]string{"name": "db"},
			a:          Answer{Route: "DELETE /v1/workloads/{name}", Permission: authz.WorkloadsWrite, Caller: operator, Code: 202},
			actor:      "olga", result: "202 allowed", workload: "db"},
		{name: "node route", method: "POST", path: "/v1/nodes/n1/cordon",
			pathValues: map[string]string{"id": "n1"},
			a:          Answer{Route: "POST /v1/nodes/{id}/cordon", Permission: authz.NodesWrite, Caller: operator, Code: 200},
			actor:      "olga", result: "200 allowed", node: "n1"},
		{name: "anonymous refusal", method: "POST", path: "/v1/manifests",
			note: func(r *http.Request) { NoteWorkloads(r, 3) },
			a: Answer{Route: "POST /v1/manifests", Permission: authz.WorkloadsWrite, Code: 401,
				Err: authn.ErrNoCredentials},
			actor: "anonymous", result: "401 denied",
			msg: []string{"via no credentials", "needs workloads.write", "3 workloads", "from 192.0.2.1:1234",
				"refused: " + authn.ErrNoCredentials.Error()}},
		{name: "unrouted names no permission", method: "POST", path: "/v1/nowhere",
			a:     Answer{Route: "unmatched", Permission: "api.write", Caller: operator, Code: 404, Err: httperr.New(404, "no route for POST /v1/nowhere")},
			actor: "olga", result: "404 unrouted",
			msg: []string{"via api token t1", "role operator", "from 192.0.2.1:1234", "refused: no route for POST /v1/nowhere"}},
		{name: "long path cut", method: "POST", path: "/v1/" + strings.Repeat("x", 500),
			a:     Answer{Route: "unmatched", Code: 404},
			actor: "anonymous", result: "404 unrouted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.RemoteAddr = "192.0.2.1:1234"
			r = r.WithContext(NewContext(r.Context()))
			for k, v := range tc.pathValues {
				r.SetPathValue(k, v)
			}
			if tc.note != nil {
				tc.note(r)
			}
			ev := Event(r, tc.a)
			if ev.GetType() != "Audit" || ev.GetActor() != tc.actor || ev.GetResult() != tc.result ||
				ev.GetWorkload() != tc.workload || ev.GetNodeId() != tc.node || ev.GetTime() == nil {
				t.Fatalf("event %v, want actor %q result %q workload %q node %q", ev, tc.actor, tc.result, tc.workload, tc.node)
			}
			if len(ev.GetAction()) > len(tc.method)+1+maxAuditPath+len("…") {
				t.Fatalf("action of %d bytes, want at most the cut path", len(ev.GetAction()))
			}
			if tc.msg != nil && ev.GetMessage() != strings.Join(tc.msg, "; ") {
				t.Fatalf("message %q, want %q", ev.GetMessage(), strings.Join(tc.msg, "; "))
			}
		})
	}
}

// sink is a RecordAudit that counts events and fails while fail is set.
type sink struct {
	mu     sync.Mutex
	events []*persysv1.Event
	fail   error
}

func (s *sink) RecordAudit(_ context.Context, in *persysv1.RecordAuditRequest, _ ...grpc.CallOption) (*persysv1.RecordAuditResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.events = append(s.events, in.GetEvent())
	return &persysv1.RecordAuditResponse{}, nil
}

func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestRecord: events are recorded and counted by result; anonymous ones
// beyond the burst are suppressed and counted; a failure is counted and
// the event dropped.
func TestRecord(t *testing.T) {
	s := &sink{}
	reg := prometheus.NewRegistry()
	a := New(Config{Sink: s, Registry: reg})
	now := time.Unix(5000, 0)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	a.Record(ctx, &persysv1.Event{Result: "201 allowed"}, false)
	a.Record(ctx, &persysv1.Event{Result: "403 denied"}, false)
	// The burst of anonymous events, and more at the same instant.
	for range anonymousBurst + 5 {
		a.Record(ctx, &persysv1.Event{Result: "401 denied"}, true)
	}
	s.fail = status.Error(codes.Unavailable, "no scheduler")
	a.Record(ctx, &persysv1.Event{Result: "200 allowed"}, false)

	if got, want := len(s.events), 2+anonymousBurst; got != want {
		t.Fatalf("%d events recorded, want %d", got, want)
	}
	if v := counter(t, reg, "persys_gateway_audit_events_total", "allowed"); v != 1 {
		t.Errorf("allowed events counted %v, want 1", v)
	}
	if v := counter(t, reg, "persys_gateway_audit_events_total", "denied"); v != float64(len(s.events)-1) {
		t.Errorf("denied events counted %v, want %d", v, len(s.events)-1)
	}
	if v := counter(t, reg, "persys_gateway_audit_suppressed_total", ""); v != 5 {
		t.Errorf("%v anonymous events suppressed, want 5", v)
	}
	// A second later the bucket holds AnonymousRate tokens again.
	now = now.Add(time.Second)
	s.fail = nil
	for range AnonymousRate + 1 {
		a.Record(ctx, &persysv1.Event{Result: "401 denied"}, true)
	}
	if v := counter(t, reg, "persys_gateway_audit_suppressed_total", ""); v != 6 {
		t.Errorf("%v anonymous events suppressed after a second, want 6", v)
	}
	if v := counter(t, reg, "persys_gateway_audit_failures_total", ""); v != 1 {
		t.Errorf("failures counted %v, want 1", v)
	}
}

func TestNewRefusesNoSink(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Sink") {
			t.Fatalf("New without a sink: panic %v, want one naming Sink", r)
		}
	}()
	New(Config{})
	t.Fatal(errors.New("New accepted a Config without a Sink"))
}
