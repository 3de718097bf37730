package docker

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

func inspectOf(desired string, st container.State) container.InspectResponse {
	return container.InspectResponse{
		ID:           "abc123",
		Created:      "2026-01-02T03:04:05.000000006Z",
		RestartCount: 2,
		State:        &st,
		Config: &container.Config{Labels: map[string]string{
			runtime.LabelWorkload: "web", runtime.LabelUID: "u1", runtime.LabelRevision: "4", LabelDesired: desired,
		}},
	}
}

func TestStatusOf(t *testing.T) {
	const unset = "0001-01-01T00:00:00Z"
	tests := []struct {
		name     string
		desired  string
		state    container.State
		want     persysv1.ActualState
		reason   persysv1.FailureReason
		exitCode int32
		message  string
	}{
		{"running", desiredRun, container.State{Status: "running", Running: true, StartedAt: "2026-01-02T03:05:00Z", FinishedAt: unset}, persysv1.ActualState_ACTUAL_STATE_RUNNING, 0, 0, ""},
		{"paused", desiredRun, container.State{Status: "paused", Paused: true}, persysv1.ActualState_ACTUAL_STATE_RUNNING, 0, 0, "paused"},
		{"created", desiredRun, container.State{Status: "created"}, persysv1.ActualState_ACTUAL_STATE_CREATING, 0, 0, "created"},
		{"created stopped", desiredStop, container.State{Status: "created"}, persysv1.ActualState_ACTUAL_STATE_STOPPED, 0, 0, ""},
		{"restarting", desiredRun, container.State{Status: "restarting", ExitCode: 1}, persysv1.ActualState_ACTUAL_STATE_CREATING, 0, 1, "restarting"},
		{"removing", desiredRun, container.State{Status: "removing"}, persysv1.ActualState_ACTUAL_STATE_DELETING, 0, 0, ""},
		{"exited zero", desiredRun, container.State{Status: "exited"}, persysv1.ActualState_ACTUAL_STATE_STOPPED, 0, 0, ""},
		{"exited non-zero", desiredRun, container.State{Status: "exited", ExitCode: 3}, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, 3, "exited with code 3"},
		{"exited non-zero when stopped", desiredStop, container.State{Status: "exited", ExitCode: 143}, persysv1.ActualState_ACTUAL_STATE_STOPPED, 0, 143, "exited with code 143"},
		{"oom", desiredRun, container.State{Status: "exited", ExitCode: 137, OOMKilled: true}, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, 137, "killed for running out of memory (exit code 137)"},
		{"oom when stopped", desiredStop, container.State{Status: "exited", ExitCode: 137, OOMKilled: true}, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, 137, "killed for running out of memory (exit code 137)"},
		{"dead", desiredRun, container.State{Status: "dead", Dead: true, Error: "driver failed"}, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, 0, "container is dead: driver failed"},
		{"engine error", desiredRun, container.State{Status: "exited", ExitCode: 127, Error: "exec: not found"}, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, 127, "exited with code 127: exec: not found"},
		{"unknown", desiredRun, container.State{Status: "weird"}, persysv1.ActualState_ACTUAL_STATE_UNKNOWN, 0, 0, `unknown engine state "weird"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := statusOf(inspectOf(tt.desired, tt.state))
			if st.GetState() != tt.want || st.GetReason() != tt.reason || st.GetExitCode() != tt.exitCode || st.GetMessage() != tt.message {
				t.Errorf("status = %s/%s exit %d %q, want %s/%s exit %d %q",
					st.GetState(), st.GetReason(), st.GetExitCode(), st.GetMessage(), tt.want, tt.reason, tt.exitCode, tt.message)
			}
			if st.GetName() != "web" || st.GetUid() != "u1" || st.GetRevision() != 4 || st.GetRuntimeId() != "abc123" || st.GetRestartCount() != 2 {
				t.Errorf("identity = %v", st)
			}
		})
	}
}

func TestStatusOfUpdatedAt(t *testing.T) {
	st := statusOf(inspectOf(desiredRun, container.State{
		Status: "exited", StartedAt: "2026-01-02T03:05:00Z", FinishedAt: "2026-01-02T03:06:00.5Z",
	}))
	want := time.Date(2026, 1, 2, 3, 6, 0, 500_000_000, time.UTC)
	if got := st.GetUpdatedAt().AsTime(); !got.Equal(want) {
		t.Errorf("updated_at = %s, want %s", got, want)
	}
}

func TestStatusOfNoState(t *testing.T) {
	st := statusOf(container.InspectResponse{})
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_UNKNOWN {
		t.Errorf("state = %s, want UNKNOWN", st.GetState())
	}
}

func TestStatusOfAddresses(t *testing.T) {
	ep := func(v4, v6 string) *network.EndpointSettings {
		e := &network.EndpointSettings{}
		if v4 != "" {
			e.IPAddress = netip.MustParseAddr(v4)
		}
		if v6 != "" {
			e.GlobalIPv6Address = netip.MustParseAddr(v6)
		}
		return e
	}
	tests := []struct {
		name     string
		settings *container.NetworkSettings
		want     []string
	}{
		{"no settings", nil, nil},
		{"bridge", &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": ep("172.17.0.2", "")}}, []string{"172.17.0.2"}},
		{"stopped (addresses cleared)", &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": ep("", "")}}, nil},
		{"host network", &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"host": ep("", ""), "none": nil}}, nil},
		{"dual stack, networks by name", &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"zeta": ep("10.9.0.3", ""), "app": ep("10.8.0.2", "fd00::2"), "lo": ep("0.0.0.0", ""),
		}}, []string{"10.8.0.2", "fd00::2", "10.9.0.3"}},
		{"same address twice", &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"a": ep("10.0.0.2", ""), "b": ep("10.0.0.2", "")}}, []string{"10.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := inspectOf(desiredRun, container.State{Status: "running", Running: true})
			info.NetworkSettings = tt.settings
			if got := statusOf(info).GetAddresses(); !slices.Equal(got, tt.want) {
				t.Errorf("addresses = %q, want %q", got, tt.want)
			}
		})
	}
}
