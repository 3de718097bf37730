package need

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test ended.
type recorder struct {
	testing.TB
	how, msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "fail", format
}
func (r *recorder) Skipf(format string, args ...any) {
	if r.how == "" {
		r.how, r.msg = "skip", format
	}
}

func TestMissing(t *testing.T) {
	for _, tt := range []struct{ ci, want string }{{"", "skip"}, {"true", "fail"}} {
		t.Setenv("CI", tt.ci)
		r := &recorder{TB: t}
		Missing(r, "qemu %s", "absent")
		if r.how != tt.want || !strings.Contains(r.msg, "qemu %s") {
			t.Errorf("CI=%q: %s %q, want %s", tt.ci, r.how, r.msg, tt.want)
		}
	}
}
