package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestParseLabels(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "blank", in: "  ", want: map[string]string{}},
		{name: "one", in: "zone=a", want: map[string]string{"zone": "a"}},
		{name: "several with spaces", in: "zone=a, disk = ssd ,empty=", want: map[string]string{"zone": "a", "disk": "ssd", "empty": ""}},
		{name: "prefixed key", in: "persys.dev/gpu=true", want: map[string]string{"persys.dev/gpu": "true"}},
		{name: "value with equals", in: "k=a=b", want: map[string]string{"k": "a=b"}},
		{name: "missing equals", in: "zone", wantErr: `labels: item 1 "zone" is not key=value`},
		{name: "empty key", in: "a=1,=2", wantErr: "labels: item 2: label key is empty"},
		{name: "bad character", in: "a b=1", wantErr: `has the character ' '`},
		{name: "duplicate", in: "a=1,a=2", wantErr: `key "a" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLabels(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLabels(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLabels(%q): %v", tt.in, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseLabels(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("ParseLabels(%q)[%q] = %q, want %q", tt.in, k, got[k], v)
				}
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	capacity := &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1000}
	tests := []struct {
		name                 string
		beforeCPU, beforeMem int64
		afterCPU, afterMem   int64
		wantCPU, wantMem     int64
		capacity             *persysv1.Resources
		wantRefused          string // resource, "" when admitted
	}{
		{name: "empty node", afterCPU: 500, afterMem: 500, wantCPU: 500, wantMem: 500, capacity: capacity},
		{name: "exactly at threshold", beforeCPU: 300, afterCPU: 800, wantCPU: 500, capacity: capacity},
		{name: "cpu over threshold", beforeCPU: 300, afterCPU: 801, wantCPU: 501, capacity: capacity, wantRefused: "cpu_millis"},
		{name: "memory over threshold", beforeMem: 700, afterMem: 900, wantMem: 200, capacity: capacity, wantRefused: "memory_bytes"},
		{name: "re-apply on a full node", beforeCPU: 950, afterCPU: 950, wantCPU: 100, capacity: capacity},
		{name: "shrinking update on a full node", beforeCPU: 950, afterCPU: 900, wantCPU: 100, capacity: capacity},
		{name: "zero request on a full node", beforeCPU: 950, beforeMem: 950, afterCPU: 950, afterMem: 950, capacity: capacity},
		{name: "growing update over threshold", beforeCPU: 700, afterCPU: 850, wantCPU: 250, capacity: capacity, wantRefused: "cpu_millis"},
		{name: "unknown capacity is not checked", afterCPU: 5000, wantCPU: 5000, capacity: &persysv1.Resources{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := admit(tt.beforeCPU, tt.beforeMem, tt.afterCPU, tt.afterMem, tt.wantCPU, tt.wantMem, tt.capacity, 0.8)
			switch {
			case tt.wantRefused == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.wantRefused != "" && r == nil:
				t.Fatalf("admitted, want a refusal on %s", tt.wantRefused)
			case r != nil && r.resource != tt.wantRefused:
				t.Fatalf("refused on %s, want %s", r.resource, tt.wantRefused)
			}
		})
	}
}

func TestLeaseRetryLimit(t *testing.T) {
	const ttl = 8 * time.Second
	tests := []struct {
		name       string
		base       time.Duration
		ttl, since time.Duration
		want       time.Duration
	}{
		{name: "no lease told: maxBackoff", base: 2 * time.Second, want: maxBackoff},
		{name: "base above maxBackoff kept", base: 30 * time.Second, want: 30 * time.Second},
		{name: "lease alive: ttl/8", base: 2 * time.Second, ttl: ttl, since: time.Second, want: time.Second},
		{name: "lease alive to the end", base: 2 * time.Second, ttl: ttl, since: 7 * time.Second, want: time.Second},
		{name: "lease surely expired: maxBackoff", base: 2 * time.Second, ttl: ttl, since: ttl, want: maxBackoff},
		{name: "tiny ttl: floor", base: time.Second, ttl: 400 * time.Millisecond, want: minLeaseRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaseRetryLimit(tt.base, tt.ttl, tt.since); got != tt.want {
				t.Fatalf("leaseRetryLimit(%s, %s, %s) = %s, want %s", tt.base, tt.ttl, tt.since, got, tt.want)
			}
		})
	}
}

// TestRetrySchedules: two agents failing the same way wait different
// (jittered) times, grow from the base, and never wait longer than the
// limit: maxBackoff, or ttl/8 while the lease may be alive.
func TestRetrySchedules(t *testing.T) {
	const tries = 12
	schedule := func(base, ttl, since time.Duration) []time.Duration {
		var r retry
		out := make([]time.Duration, tries)
		for i := range out {
			out[i] = r.next(base, ttl, since)
		}
		return out
	}
	tests := []struct {
		name       string
		base       time.Duration
		ttl, since time.Duration
	}{
		{name: "registration, no lease", base: registerMinBackoff},
		{name: "heartbeat, lease alive", base: 3 * time.Second, ttl: 16 * time.Second, since: time.Second},
		{name: "registration, lease alive", base: registerMinBackoff, ttl: 16 * time.Second, since: time.Second},
		{name: "heartbeat, lease gone", base: 3 * time.Second, ttl: 16 * time.Second, since: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := leaseRetryLimit(tt.base, tt.ttl, tt.since)
			a, b := schedule(tt.base, tt.ttl, tt.since), schedule(tt.base, tt.ttl, tt.since)
			if slices.Equal(a, b) {
				t.Fatalf("two agents retry in lockstep: %v", a)
			}
			for _, s := range [][]time.Duration{a, b} {
				for i, d := range s {
					if d <= 0 || d > limit {
						t.Fatalf("wait %d = %s, want in (0, %s]: %v", i, d, limit, s)
					}
				}
				first := min(tt.base, limit)
				if lo := time.Duration(float64(first) * (1 - 2*retryJitter)); s[0] < lo {
					t.Errorf("first wait %s, want about %s", s[0], first)
				}
				// After enough doublings every wait is near the limit.
				if lo := time.Duration(float64(limit) * (1 - retryJitter) / (1 + retryJitter)); s[tries-1] < lo {
					t.Errorf("wait %d = %s, want at least %s: %v", tries-1, s[tries-1], lo, s)
				}
			}
		})
	}
}

// TestRetryLimitMoves: a lease that expires mid-sequence lifts the limit
// without restarting from the base; one told mid-sequence lowers it at once.
func TestRetryLimitMoves(t *testing.T) {
	const ttl = 8 * time.Second
	var r retry
	for range 6 {
		if d := r.next(2*time.Second, ttl, time.Second); d > ttl/8 {
			t.Fatalf("lease alive: wait %s > %s", d, ttl/8)
		}
	}
	if d := r.next(2*time.Second, ttl, ttl); d < 4*time.Second {
		t.Fatalf("lease gone after 6 tries: wait %s, want the grown backoff (about %s)", d, maxBackoff)
	}
	if d := r.next(2*time.Second, ttl, 0); d > ttl/8 {
		t.Fatalf("lease renewed: wait %s > %s", d, ttl/8)
	}
	r.reset()
	if d := r.next(2*time.Second, 0, 0); d > 3*time.Second {
		t.Fatalf("after reset: wait %s, want about the base", d)
	}
}

func TestParseMeminfo(t *testing.T) {
	in := []byte("MemTotal:        2000 kB\nMemFree:  10 kB\nMemAvailable:    500 kB\nHugePages_Total:       0\n")
	got, err := parseMeminfo(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"MemTotal": 2000 * 1024, "MemFree": 10 * 1024, "MemAvailable": 500 * 1024, "HugePages_Total": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if _, err := parseMeminfo([]byte("MemTotal: lots kB\n")); err == nil {
		t.Error("parseMeminfo accepted a non-number")
	}
}

func TestHostCapacity(t *testing.T) {
	c, err := HostCapacity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.CpuMillis < 1000 || c.MemoryBytes <= 0 || c.DiskBytes <= 0 {
		t.Fatalf("HostCapacity = %v, want positive figures", c)
	}
}

func TestValidateApply(t *testing.T) {
	spec := func(mut func(*persysv1.WorkloadSpec)) *persysv1.WorkloadSpec {
		s := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			Container: &persysv1.ContainerSpec{Image: "x"}}
		if mut != nil {
			mut(s)
		}
		return s
	}
	tests := []struct {
		name    string
		req     *persysv1.ApplyWorkloadRequest
		wantErr string
	}{
		{name: "valid", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1", Revision: 1, Spec: spec(nil)}},
		{name: "no name", req: &persysv1.ApplyWorkloadRequest{Uid: "u1", Spec: spec(nil)}, wantErr: "name is required"},
		{name: "slash in name", req: &persysv1.ApplyWorkloadRequest{Name: "a/b", Uid: "u1", Spec: spec(nil)}, wantErr: "name"},
		{name: "no uid", req: &persysv1.ApplyWorkloadRequest{Name: "web", Spec: spec(nil)}, wantErr: "uid is required"},
		{name: "no spec", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1"}, wantErr: "spec is required"},
		{name: "no type", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1", Spec: spec(func(s *persysv1.WorkloadSpec) {
			s.Type = persysv1.WorkloadType_WORKLOAD_TYPE_UNSPECIFIED
		})}, wantErr: "spec.type is required"},
		{name: "unknown type", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1", Spec: spec(func(s *persysv1.WorkloadSpec) {
			s.Type = 42
		})}, wantErr: "spec.type 42"},
		{name: "negative cpu", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1", Spec: spec(func(s *persysv1.WorkloadSpec) {
			s.Resources = &persysv1.Resources{CpuMillis: -1}
		})}, wantErr: "spec.resources.cpu_millis"},
		{name: "negative memory", req: &persysv1.ApplyWorkloadRequest{Name: "web", Uid: "u1", Spec: spec(func(s *persysv1.WorkloadSpec) {
			s.Resources = &persysv1.Resources{MemoryBytes: -1}
		})}, wantErr: "spec.resources.memory_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateApply(tt.req)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validateApply: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validateApply error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestInvalidSpecCarriesItsReason(t *testing.T) {
	err := invalidSpec(errors.New("spec.type is required"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code = %s, want InvalidArgument", status.Code(err))
	}
	if got := rpcreason.Of(err); got != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
		t.Fatalf("reason = %s, want INVALID_SPEC", got)
	}
}

func TestNameLocksSerializePerName(t *testing.T) {
	locks := newNameLocks()
	ctx := context.Background()
	var inside atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := locks.lock(ctx, "same")
			if err != nil {
				t.Error(err)
				return
			}
			if n := inside.Add(1); n != 1 {
				t.Errorf("%d holders of one name at once", n)
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()

	// A held name does not block another name, and a waiter gives up with
	// its context.
	unlock, err := locks.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := locks.lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock b while a is held: %v", err)
	}
	unlockB()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := locks.lock(cctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held name with a cancelled context: %v", err)
	}
	unlock()
	locks.mu.Lock()
	n := len(locks.locks)
	locks.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d lock entries left after every release", n)
	}
}

func TestLedgerPruneKeepsChangesAfterMark(t *testing.T) {
	dir := t.TempDir()
	l, err := openLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	capacity := &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1000}
	log := slog.New(slog.DiscardHandler)
	if _, _, r := l.reserve("old", allocation{UID: "u", Revision: 1, CPUMillis: 100}, capacity, 0.8, true); r != nil {
		t.Fatal(r)
	}
	mark := l.mark()
	// Reserved after the listing began: must survive a prune of that listing.
	if _, _, r := l.reserve("new", allocation{UID: "u", Revision: 1, CPUMillis: 100}, capacity, 0.8, true); r != nil {
		t.Fatal(r)
	}
	l.prune(map[string]bool{}, mark, log)
	if _, ok := l.get("old"); ok {
		t.Error("old entry not pruned")
	}
	if _, ok := l.get("new"); !ok {
		t.Error("entry reserved after the mark was pruned")
	}

	// The record survives a reopen.
	l2, err := openLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.total().GetCpuMillis(); got != 100 {
		t.Fatalf("reopened ledger total cpu = %d, want 100", got)
	}
	if _, err := openLedger(filepath.Join(dir, ledgerFile)); err == nil {
		t.Fatal("openLedger over a file succeeded")
	}
}

// TestAllocatableAgreesWithAdmit: what the agent tells the scheduler it
// may place is exactly what admit lets in, so the scheduler never places
// work this agent would refuse, and never holds back work it would take.
func TestAllocatableAgreesWithAdmit(t *testing.T) {
	for _, tc := range []struct {
		capacity  *persysv1.Resources
		threshold float64
	}{
		{&persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1 << 30, DiskBytes: 10 << 30}, 0.8},
		{&persysv1.Resources{CpuMillis: 3, MemoryBytes: 7}, 0.8},
		{&persysv1.Resources{CpuMillis: 1001, MemoryBytes: 999}, 0.33},
		{&persysv1.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}, 1},
	} {
		a := allocatable(tc.capacity, tc.threshold)
		if a.GetDiskBytes() != tc.capacity.GetDiskBytes() {
			t.Errorf("%v at %v: disk %d, want the whole %d", tc.capacity, tc.threshold, a.GetDiskBytes(), tc.capacity.GetDiskBytes())
		}
		if r := admit(0, 0, a.GetCpuMillis(), a.GetMemoryBytes(), a.GetCpuMillis(), a.GetMemoryBytes(), tc.capacity, tc.threshold); r != nil {
			t.Errorf("%v at %v: filling allocatable %v refused: %v", tc.capacity, tc.threshold, a, r)
		}
		if r := admit(0, 0, a.GetCpuMillis()+1, 0, a.GetCpuMillis()+1, 0, tc.capacity, tc.threshold); r == nil {
			t.Errorf("%v at %v: one mCPU past allocatable %d admitted", tc.capacity, tc.threshold, a.GetCpuMillis())
		}
		if r := admit(0, 0, 0, a.GetMemoryBytes()+1, 0, a.GetMemoryBytes()+1, tc.capacity, tc.threshold); r == nil {
			t.Errorf("%v at %v: one byte past allocatable %d admitted", tc.capacity, tc.threshold, a.GetMemoryBytes())
		}
	}
}

// TestAdoptInterval: the agent takes the heartbeat interval a scheduler
// tells (at registration or in any heartbeat's answer) only within its
// bounds: one that would flood the scheduler, or stall the lease, is
// ignored and the current one kept.
func TestAdoptInterval(t *testing.T) {
	tests := []struct {
		name string
		told int64 // milliseconds
		want time.Duration
	}{
		{"taken", 50, 50 * time.Millisecond},
		{"zero keeps the current", 0, 10 * time.Minute},
		{"below the floor", 1, 10 * time.Minute},
		{"negative", -5, 10 * time.Minute},
		{"above the ceiling", (10*time.Minute + time.Millisecond).Milliseconds(), 10 * time.Minute},
		{"the ceiling", (10 * time.Minute).Milliseconds(), 10 * time.Minute},
		{"the floor", 10, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{interval: 10 * time.Minute, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			a.adoptInterval(tt.told)
			if got := a.heartbeatInterval(); got != tt.want {
				t.Fatalf("interval after %d ms told = %s, want %s", tt.told, got, tt.want)
			}
		})
	}
}
