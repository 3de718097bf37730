package enummirror_test

import (
	"fmt"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/enummirror"
)

// recorder collects the errors Check reports instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	ed := persysv1.NodeState(0).Descriptor()
	tests := []struct {
		goType string
		mode   enummirror.Mode
		want   []string // substrings of the errors, in order; none: passes
	}{
		{"Good", enummirror.Full, nil},
		{"Missing", enummirror.Full, []string{"NODE_STATE_NOT_READY (2) has no Go constant"}},
		{"Missing", enummirror.Subset, nil},
		{"Extra", enummirror.Full, []string{"ExtraGone = 3 has no value"}},
		{"Extra", enummirror.Subset, []string{"ExtraGone = 3 has no value"}},
		{"Swapped", enummirror.Full, []string{"SwappedNotReady = 1, but 1 in persys.v1.NodeState is NODE_STATE_READY",
			"SwappedReady = 2, but 2 in persys.v1.NodeState is NODE_STATE_NOT_READY"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.goType, tt.mode), func(t *testing.T) {
			consts := enummirror.Consts(t, "testdata/mirror", tt.goType)
			r := &recorder{TB: t}
			enummirror.Check(r, consts, tt.goType, ed, tt.mode)
			if len(r.errs) != len(tt.want) {
				t.Fatalf("errors %q, want %d matching %q", r.errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(r.errs[i], w) {
					t.Errorf("error %d = %q, want it to contain %q", i, r.errs[i], w)
				}
			}
		})
	}
}

func TestConstsSkipsUnexported(t *testing.T) {
	got := enummirror.Consts(t, "testdata/mirror", "Good")
	if len(got) != 2 || got["GoodReady"] != 1 || got["GoodNotReady"] != 2 {
		t.Errorf("Consts = %v, want GoodReady 1 and GoodNotReady 2", got)
	}
}
