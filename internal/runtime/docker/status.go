package docker

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// statusOf maps a container's inspect result to a workload status. It is
// pure: the time it reports is the engine's latest state change.
func statusOf(info container.InspectResponse) *persysv1.WorkloadStatus {
	var labels map[string]string
	if info.Config != nil {
		labels = info.Config.Labels
	}
	st := &persysv1.WorkloadStatus{
		Name:     labels[runtime.LabelWorkload],
		Uid:      labels[runtime.LabelUID],
		Revision: revisionOf(labels),
	}
	st.RuntimeId = info.ID
	st.RestartCount = int32(info.RestartCount)
	st.Addresses = containerAddresses(info.NetworkSettings)
	s := info.State
	if s == nil {
		st.State = persysv1.ActualState_ACTUAL_STATE_UNKNOWN
		st.Message = "engine returned no container state"
		return st
	}
	st.UpdatedAt = latest(info.Created, s.StartedAt, s.FinishedAt)
	wantStopped := labels[LabelDesired] == desiredStop

	switch s.Status {
	case container.StateRunning:
		st.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
	case container.StatePaused:
		st.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
		st.Message = "paused"
	case container.StateRestarting:
		st.State = persysv1.ActualState_ACTUAL_STATE_CREATING
		st.Message = "restarting"
		st.ExitCode = int32(s.ExitCode)
	case container.StateCreated:
		if wantStopped {
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
		} else {
			st.State = persysv1.ActualState_ACTUAL_STATE_CREATING
			st.Message = "created"
		}
	case container.StateRemoving:
		st.State = persysv1.ActualState_ACTUAL_STATE_DELETING
	case container.StateExited, container.StateDead:
		st.ExitCode = int32(s.ExitCode)
		failed := s.Status == container.StateDead || s.OOMKilled || s.ExitCode != 0
		if !failed || (wantStopped && s.Status == container.StateExited && !s.OOMKilled) {
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
			if s.ExitCode != 0 {
				st.Message = fmt.Sprintf("exited with code %d", s.ExitCode)
			}
			break
		}
		st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		st.Reason = persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED
		switch {
		case s.OOMKilled:
			st.Message = fmt.Sprintf("killed for running out of memory (exit code %d)", s.ExitCode)
		case s.Status == container.StateDead:
			st.Message = "container is dead"
		default:
			st.Message = fmt.Sprintf("exited with code %d", s.ExitCode)
		}
		if s.Error != "" {
			st.Message += ": " + s.Error
		}
	default:
		st.State = persysv1.ActualState_ACTUAL_STATE_UNKNOWN
		st.Message = fmt.Sprintf("unknown engine state %q", s.Status)
	}
	return st
}

// containerAddresses lists the container's IP addresses on its networks,
// by network name, each network's IPv4 address before its global IPv6
// one. The engine clears them when the container stops, so only a
// running (or paused) container has any; host networking has none.
func containerAddresses(ns *container.NetworkSettings) []string {
	if ns == nil {
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(ns.Networks)) {
		ep := ns.Networks[name]
		if ep == nil {
			continue
		}
		for _, a := range []netip.Addr{ep.IPAddress, ep.GlobalIPv6Address} {
			if a.IsValid() && !a.IsUnspecified() && !slices.Contains(out, a.String()) {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// revisionOf reads the revision label; 0 when missing or malformed.
func revisionOf(labels map[string]string) uint64 {
	rev, err := strconv.ParseUint(labels[runtime.LabelRevision], 10, 64)
	if err != nil {
		return 0
	}
	return rev
}

// latest returns the newest of the engine's RFC 3339 timestamps, or nil
// when none is set. The engine writes "0001-01-01T00:00:00Z" for unset.
func latest(stamps ...string) *timestamppb.Timestamp {
	var newest time.Time
	for _, s := range stamps {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Year() <= 1 {
			continue
		}
		if t.After(newest) {
			newest = t
		}
	}
	if newest.IsZero() {
		return nil
	}
	return timestamppb.New(newest)
}
