package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestAuditEventsLongerRetentionAndTypeFilter(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.NewWithOptions(t, store.Options{EventTTL: time.Minute})
	audit := s.AuditLog(10 * time.Hour)

	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "web"}); err != nil {
		t.Fatal(err)
	}
	in := &persysv1.Event{Type: "ignored", Actor: "alice (cert)", Action: "POST /v1/workloads", Result: "201 allowed", Workload: "web"}
	if err := audit.Append(ctx, in); err != nil {
		t.Fatalf("append audit: %v", err)
	}
	if in.GetType() != "ignored" || in.GetTime() != nil {
		t.Fatal("Append modified its argument")
	}
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Applied", Workload: "web"}); err != nil {
		t.Fatal(err)
	}

	all, err := s.ListEventsFiltered(ctx, store.EventFilter{}, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("list all: %d events, %v", len(all), err)
	}
	for _, typ := range []string{"Audit", "audit"} {
		got, err := s.ListEventsFiltered(ctx, store.EventFilter{Type: typ}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].GetType() != store.AuditEventType || got[0].GetActor() != "alice (cert)" || got[0].GetTime() == nil {
			t.Fatalf("type %q: %v", typ, got)
		}
	}
	got, err := s.ListEventsFiltered(ctx, store.EventFilter{Type: "Applied", Workload: "web"}, 0)
	if err != nil || len(got) != 1 || got[0].GetType() != "Applied" {
		t.Fatalf("type and workload: %v %v", got, err)
	}

	// The audit event's lease outlives the ordinary events' lease.
	raw, err := cli.Get(ctx, s.Prefix()+"/events/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var auditTTL, eventTTL int64
	for _, kv := range raw.Kvs {
		ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(kv.Value), "alice (cert)") {
			auditTTL = ttl.GrantedTTL
		} else {
			eventTTL = ttl.GrantedTTL
		}
	}
	if auditTTL < int64((10*time.Hour).Seconds()) || eventTTL > int64((2*time.Minute).Seconds()) || eventTTL == 0 {
		t.Fatalf("audit lease %ds, event lease %ds: want audit >= 10h and events about 1m", auditTTL, eventTTL)
	}
}

func TestAuditEventValidation(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	audit := s.AuditLog(0)
	if audit.Retention() != store.DefaultAuditRetention {
		t.Fatalf("default retention %s", audit.Retention())
	}
	long := strings.Repeat("x", 4096)
	tests := []struct {
		name  string
		ev    *persysv1.Event
		field string
	}{
		{"nil", nil, "audit event"},
		{"no actor", &persysv1.Event{Action: "a", Result: "r"}, "actor"},
		{"no action", &persysv1.Event{Actor: "a", Result: "r"}, "action"},
		{"no result", &persysv1.Event{Actor: "a", Action: "a"}, "result"},
		{"long message", &persysv1.Event{Actor: "a", Action: "a", Result: "r", Message: long}, "message"},
		{"long actor", &persysv1.Event{Actor: long, Action: "a", Result: "r"}, "actor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.Append(ctx, tt.ev)
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}
