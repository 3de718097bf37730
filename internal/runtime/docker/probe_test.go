package docker

import (
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// TestProbeAbilities: the agent's health checks reach a container at the
// address ProbeAddress gives, run commands in it with ProbeExec, and stop
// it with StopInstance.
func TestProbeAbilities(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	name, uid := e.workload("probe")
	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1,
		Spec: e.spec(&persysv1.ContainerSpec{Ports: []*persysv1.PortMapping{{ContainerPort: 8080, Protocol: "tcp"}}})})
	id := st.GetRuntimeId()

	addr, err := e.rt.ProbeAddress(ctx, id, 8080)
	if err != nil {
		t.Fatalf("ProbeAddress: %v", err)
	}
	if strings.HasPrefix(addr, "127.0.0.1:") || !strings.HasSuffix(addr, ":8080") {
		t.Fatalf("ProbeAddress = %s, want the container's own address and port 8080", addr)
	}
	eventually(t, 30*time.Second, "hello answering at "+addr, func() (bool, string) {
		body, err := get(ctx, "http://"+addr+"/healthz")
		if err != nil {
			return false, err.Error()
		}
		return body == "ok", body
	})

	// hello's "exit CODE" mode exits with CODE; a failing start prints why.
	tests := []struct {
		argv []string
		code int
		out  string
	}{
		{[]string{"/hello", "exit", "0"}, 0, ""},
		{[]string{"/hello", "exit", "7"}, 7, ""},
		{[]string{"/hello", "exit", "x"}, 1, "want an integer"},
	}
	for _, tc := range tests {
		code, out, err := e.rt.ProbeExec(ctx, id, tc.argv)
		if err != nil || code != tc.code || !strings.Contains(string(out), tc.out) {
			t.Errorf("ProbeExec(%v) = %d %q %v, want %d with %q", tc.argv, code, out, err, tc.code, tc.out)
		}
	}
	if _, _, err := e.rt.ProbeExec(ctx, id, []string{"/no/such/program"}); err == nil {
		// The engine refuses to start it, or it exits non-zero: never 0.
		if code, _, _ := e.rt.ProbeExec(ctx, id, []string{"/no/such/program"}); code == 0 {
			t.Error("a missing program passed")
		}
	}

	if err := e.rt.StopInstance(ctx, id); err != nil {
		t.Fatalf("StopInstance: %v", err)
	}
	res, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Container.State.Running {
		t.Fatal("container still runs after StopInstance")
	}
	if err := e.rt.StopInstance(ctx, id); err != nil {
		t.Fatalf("StopInstance of a stopped container: %v", err)
	}
	if _, err := e.rt.ProbeAddress(ctx, id, 8080); err == nil {
		t.Error("ProbeAddress of a stopped container without published ports succeeded")
	}
}
