// Package buildinfo holds the version, commit and build date that the
// release build (scripts/dist.sh) stamps into the binaries with
//
//	-ldflags "-X github.com/persys-dev/compute/internal/buildinfo.version=v1.2.3
//	          -X github.com/persys-dev/compute/internal/buildinfo.commit=<sha>
//	          -X github.com/persys-dev/compute/internal/buildinfo.date=<RFC 3339>"
//
// A plain `go build` stamps nothing; Get then falls back to what the Go
// toolchain recorded (the VCS revision and time when built in a checkout).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the linker; strings because -X sets only strings.
var (
	version = ""
	commit  = ""
	date    = ""
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the stamped values, completed from the toolchain's record.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && i.Commit == "":
				i.Commit = s.Value
			case s.Key == "vcs.time" && i.Date == "":
				i.Date = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	if i.Date == "" {
		i.Date = "unknown"
	}
	return i
}

// String is the one line `persys version` prints.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s, %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
