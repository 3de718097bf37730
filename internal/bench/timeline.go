package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// DefaultTimelineEvery is the period of a throughput run's timeline.
const DefaultTimelineEvery = 10 * time.Second

// TimelineSample is one line of a throughput run's timeline: how many
// workloads were placed and RUNNING at T seconds, and the placement rate
// since the line before.
type TimelineSample struct {
	T            float64 `json:"t_s"`
	Placed       int     `json:"placed"`
	PlacementsPS float64 `json:"placements_per_s"`
	Running      int     `json:"running"`
}

// timeline records a sample every period of a run that polls far more
// often; one goroutine owns it.
type timeline struct {
	every   time.Duration
	start   time.Time
	next    time.Time
	samples []TimelineSample
}

func newTimeline(start time.Time, every time.Duration) *timeline {
	return &timeline{every: every, start: start, next: start.Add(every)}
}

// observe takes a poll's figures at now and records them once a period
// is due; final records them whatever the time (the run's end).
func (tl *timeline) observe(now time.Time, placed, running int, final bool) {
	if !final && now.Before(tl.next) {
		return
	}
	for !tl.next.After(now) {
		tl.next = tl.next.Add(tl.every)
	}
	s := TimelineSample{T: now.Sub(tl.start).Seconds(), Placed: placed, Running: running}
	var prev TimelineSample
	if n := len(tl.samples); n > 0 {
		prev = tl.samples[n-1]
		if final && prev.T == s.T {
			return
		}
	}
	if dt := s.T - prev.T; dt > 0 {
		s.PlacementsPS = float64(placed-prev.Placed) / dt
	}
	tl.samples = append(tl.samples, s)
}

// writeTimeline prints the samples as a table.
func writeTimeline(w io.Writer, samples []TimelineSample) error {
	if len(samples) == 0 {
		return nil
	}
	fmt.Fprintln(w, "placements over time:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "T\tPLACED\tPLACEMENTS/S\tRUNNING\t")
	for _, s := range samples {
		fmt.Fprintf(tw, "%.1fs\t%d\t%.0f\t%d\t\n", s.T, s.Placed, s.PlacementsPS, s.Running)
	}
	return tw.Flush()
}
