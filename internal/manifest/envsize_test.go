package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestEnvAndArgSizes: a workload whose environment or argument list would
// not let its process start is refused at apply, naming the field. The
// cases go through ValidateApplyRequest, the scheduler's check of an
// ApplyRequest, which runs the manifest's rules.
func TestEnvAndArgSizes(t *testing.T) {
	container := func(mutate func(*persysv1.ContainerSpec)) *persysv1.WorkloadSpec {
		c := &persysv1.ContainerSpec{Image: "persys-hello:latest"}
		mutate(c)
		return &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: c}
	}
	compose := func(env map[string]string) *persysv1.WorkloadSpec {
		return &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE,
			Compose: &persysv1.ComposeSpec{Inline: "services: {a: {image: x}}", Env: env}}
	}
	// env returns n variables V0..V(n-1), each with a value of size bytes.
	env := func(n, size int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("V%d", i)] = strings.Repeat("x", size)
		}
		return m
	}
	args := func(n, size int) []string {
		var a []string
		for range n {
			a = append(a, strings.Repeat("a", size))
		}
		return a
	}
	cases := []struct {
		name   string
		spec   *persysv1.WorkloadSpec
		fields []string
		reason string
	}{
		{"value at the limit", container(func(c *persysv1.ContainerSpec) { c.Env = env(1, MaxEnvValueBytes) }), nil, ""},
		{"value over the limit", container(func(c *persysv1.ContainerSpec) { c.Env = env(1, MaxEnvValueBytes+1) }),
			[]string{"spec.container.env.V0"}, "value is 32769 bytes, more than the limit of 32768"},
		{"900 KB value", container(func(c *persysv1.ContainerSpec) { c.Env = env(1, 900_000) }),
			[]string{"spec.container.env.V0", "spec.container.env"}, "value is 900000 bytes"},
		// 4 values of 32 KiB and their names: just over 128 KiB in all.
		{"total over the limit", container(func(c *persysv1.ContainerSpec) { c.Env = env(4, MaxEnvValueBytes) }),
			[]string{"spec.container.env"}, "takes 131084 bytes in all"},
		{"total at the limit", container(func(c *persysv1.ContainerSpec) { c.Env = env(4, MaxEnvValueBytes-3) }), nil, ""},
		{"secretEnv names count", func() *persysv1.WorkloadSpec {
			s := container(func(c *persysv1.ContainerSpec) { c.Env = env(4, MaxEnvValueBytes-3) })
			s.SecretEnv = []*persysv1.SecretEnv{{Name: "TOKEN", Secret: "api", Key: "token"}}
			return s
		}(), []string{"spec.container.env"}, "secretEnv names included"},
		{"compose value over the limit", compose(env(1, MaxEnvValueBytes+1)), []string{"spec.compose.env.V0"}, "more than the limit of 32768"},
		{"compose total over the limit", compose(env(5, 30_000)), []string{"spec.compose.env"}, "more than the limit of 131072"},
		{"args at the limit", container(func(c *persysv1.ContainerSpec) { c.Args = args(2, MaxArgBytes/2-1) }), nil, ""},
		{"args over the limit", container(func(c *persysv1.ContainerSpec) { c.Args = args(2, MaxArgBytes/2) }),
			[]string{"spec.container.args"}, "command and args take 131074 bytes in all"},
		{"command and args together", container(func(c *persysv1.ContainerSpec) {
			c.Command, c.Args = args(1, MaxArgBytes/2), args(1, MaxArgBytes/2)
		}), []string{"spec.container.args"}, "more than the limit of 131072"},
		{"command alone", container(func(c *persysv1.ContainerSpec) { c.Command = args(1, MaxArgBytes) }),
			[]string{"spec.container.command"}, "more than the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateApplyRequest(&persysv1.ApplyRequest{Name: "big", Spec: tc.spec})
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not *Error", err)
			}
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields = %q, want %q (error: %v)", got, tc.fields, err)
			}
			if !strings.Contains(e.Fields[0].Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", e.Fields[0].Reason, tc.reason)
			}
		})
	}
}
