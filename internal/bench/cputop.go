package bench

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	pprofile "github.com/google/pprof/profile"
)

// cpuTopN is how many functions the report lists by flat and by
// cumulative CPU.
const cpuTopN = 15

// FuncCPU is one function's share of a CPU profile.
type FuncCPU struct {
	Func    string  `json:"func"`
	Seconds float64 `json:"cpu_s"`
	Share   float64 `json:"share"`
}

// CPUTop is what a CPU profile says bounds a run: the functions that
// spent the most CPU themselves (flat) and with what they called (cum).
type CPUTop struct {
	Process string    `json:"process"`
	Path    string    `json:"path"`
	Seconds float64   `json:"cpu_s"`
	Flat    []FuncCPU `json:"flat"`
	Cum     []FuncCPU `json:"cum"`
}

// TopOfProfile reads a CPU profile (runtime/pprof's format) and returns
// its n heaviest functions by flat and by cumulative CPU time.
func TopOfProfile(path string, n int) (CPUTop, error) {
	top := CPUTop{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return top, err
	}
	defer f.Close()
	p, err := pprofile.Parse(f)
	if err != nil {
		return top, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	vi, unit, err := cpuValue(p)
	if err != nil {
		return top, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	flat, cum := map[string]int64{}, map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		seen := map[string]bool{}
		for i, loc := range s.Location {
			// Lines run from the innermost inlined function out: the
			// leaf's first line is where the CPU went.
			for j, ln := range loc.Line {
				name := funcName(ln)
				if i == 0 && j == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
			if len(loc.Line) == 0 {
				name := fmt.Sprintf("0x%x", loc.Address)
				if i == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	top.Seconds = float64(total) * unit
	top.Flat = heaviest(flat, total, unit, n)
	top.Cum = heaviest(cum, total, unit, n)
	return top, nil
}

// cpuValue finds the sample value that holds CPU time and the seconds
// one unit of it is.
func cpuValue(p *pprofile.Profile) (int, float64, error) {
	for i, st := range p.SampleType {
		if st.Type != "cpu" {
			continue
		}
		switch st.Unit {
		case "nanoseconds":
			return i, 1e-9, nil
		case "microseconds":
			return i, 1e-6, nil
		case "milliseconds":
			return i, 1e-3, nil
		case "seconds":
			return i, 1, nil
		}
		return 0, 0, fmt.Errorf("cpu samples in %q: unknown unit", st.Unit)
	}
	return 0, 0, fmt.Errorf("no cpu samples (a CPU profile?)")
}

func funcName(ln pprofile.Line) string {
	if ln.Function == nil || ln.Function.Name == "" {
		return "?"
	}
	return ln.Function.Name
}

// heaviest returns the n largest of by, largest first (ties by name).
func heaviest(by map[string]int64, total int64, unit float64, n int) []FuncCPU {
	out := make([]FuncCPU, 0, len(by))
	for name, v := range by {
		share := 0.0
		if total > 0 {
			share = float64(v) / float64(total)
		}
		out = append(out, FuncCPU{Func: name, Seconds: float64(v) * unit, Share: share})
	}
	slices.SortFunc(out, func(a, b FuncCPU) int {
		if c := cmp.Compare(b.Seconds, a.Seconds); c != 0 {
			return c
		}
		return cmp.Compare(a.Func, b.Func)
	})
	return out[:min(n, len(out))]
}

// write prints the two lists side by side.
func (t CPUTop) write(w io.Writer) error {
	fmt.Fprintf(w, "what bounds the run: %s process, %.1fs of CPU sampled (%s); top %d by flat and by cumulative CPU:\n",
		t.Process, t.Seconds, t.Path, cpuTopN)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAT\tFLAT%\tFUNCTION\tCUM\tCUM%\tFUNCTION")
	for i := range max(len(t.Flat), len(t.Cum)) {
		var a, b FuncCPU
		if i < len(t.Flat) {
			a = t.Flat[i]
		}
		if i < len(t.Cum) {
			b = t.Cum[i]
		}
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t%s\t%.1f%%\t%s\n", secs(a.Seconds), 100*a.Share, short(a.Func), secs(b.Seconds), 100*b.Share, short(b.Func))
	}
	return tw.Flush()
}

// short drops the module's own path from a function name: the table is
// read on a terminal.
func short(fn string) string { return strings.TrimPrefix(fn, "github.com/persys-dev/compute/") }

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(10 * time.Millisecond).String()
}
