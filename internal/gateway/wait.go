package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// Wait conditions accepted by the wait route's "for" parameter.
const (
	WaitRunning = "running"
	WaitStopped = "stopped"
	WaitDeleted = "deleted"
)

// WaitDone reports whether view satisfies the wait condition forState.
// A status counts only when it is about the workload's current revision
// (or names no revision), so that waiting right after an update does not
// return the old revision's state. FAILED ends every wait except "deleted",
// which ends only when the workload is gone.
func WaitDone(view *persysv1.WorkloadView, forState string) bool {
	st := view.GetStatus()
	if st == nil {
		return false
	}
	want := view.GetWorkload().GetRevision()
	if st.GetRevision() != 0 && want != 0 && st.GetRevision() < want {
		return false
	}
	switch forState {
	case WaitRunning:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED
	case WaitStopped:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_STOPPED || st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED
	default:
		return false
	}
}

// wait follows the scheduler's WatchWorkload stream until the condition
// holds, the workload is gone, or the timeout passes (408 with the last
// view seen). It never polls.
func (g *gateway) wait(w http.ResponseWriter, r *http.Request) (int, error) {
	q := r.URL.Query()
	forState := q.Get("for")
	if forState == "" {
		forState = WaitRunning
	}
	switch forState {
	case WaitRunning, WaitStopped, WaitDeleted:
	default:
		return 0, httperr.Field("for", fmt.Sprintf("must be one of running, stopped, deleted, got %q", forState))
	}
	timeout := defaultWaitTimeout
	if s := q.Get("timeout"); s != "" {
		d, err := parseTimeout("timeout", s, maxWaitTimeout)
		if err != nil {
			return 0, err
		}
		timeout = d
	}
	name := r.PathValue("name")

	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	stream, err := g.control.WatchWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name})
	if err != nil {
		return 0, g.waitErr(r, ctx, err, name, forState, timeout, nil, w)
	}
	var last *persysv1.WorkloadView
	for {
		view, err := stream.Recv()
		if err != nil {
			return 0, g.waitErr(r, ctx, err, name, forState, timeout, last, w)
		}
		last = view
		if WaitDone(view, forState) {
			return writeJSON(w, http.StatusOK, view)
		}
	}
}

// waitErr turns the end of a watch stream into the wait route's answer.
func (g *gateway) waitErr(r *http.Request, ctx context.Context, err error, name, forState string, timeout time.Duration, last *persysv1.WorkloadView, w http.ResponseWriter) error {
	gone := errors.Is(err, io.EOF) || status.Code(err) == codes.NotFound
	switch {
	case gone && forState == WaitDeleted:
		if last == nil {
			last = &persysv1.WorkloadView{}
		}
		_, werr := writeJSON(w, http.StatusOK, last)
		return werr
	case errors.Is(err, io.EOF):
		return httperr.New(http.StatusNotFound, fmt.Sprintf("workload %q was deleted while waiting for it to be %s", name, forState))
	case (ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded) && r.Context().Err() == nil:
		// The scheduler may notice the propagated deadline a moment
		// before our own context does.
		if last == nil {
			return httperr.New(http.StatusRequestTimeout, fmt.Sprintf("timed out after %s waiting for workload %q to be %s; the scheduler sent no state", timeout, name, forState))
		}
		_, werr := writeJSON(w, http.StatusRequestTimeout, last)
		return werr
	default:
		return err
	}
}
