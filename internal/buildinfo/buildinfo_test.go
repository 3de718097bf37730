package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestStampedValuesWin(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v1.2.3", "abc123", "2026-01-02T03:04:05Z"
	i := Get()
	if i.Version != "v1.2.3" || i.Commit != "abc123" || i.Date != "2026-01-02T03:04:05Z" {
		t.Fatalf("Get() = %+v, want the stamped values", i)
	}
	want := "v1.2.3 (commit abc123, built 2026-01-02T03:04:05Z, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if i.String() != want {
		t.Fatalf("String() = %q, want %q", i.String(), want)
	}
}

func TestUnstampedIsDev(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "", "", ""
	i := Get()
	if i.Version != "dev" || i.Commit == "" || i.Date == "" || !strings.Contains(i.String(), "dev (commit ") {
		t.Fatalf("unstamped Get() = %+v", i)
	}
}
