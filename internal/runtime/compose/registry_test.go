package compose

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/registry"
)

// A private image from a registry with basic auth next to a public
// (local) one in one compose file.
func TestComposePrivateImage(t *testing.T) {
	h := newHarness(t)
	reg := registry.Start(t)
	ctx := ctxT(t)
	private := reg.Push(t, h.hello, "persys/private-hello-"+randSuffix(t)+":1")
	t.Cleanup(func() { _, _ = h.cli.ImageRemove(context.Background(), private, client.ImageRemoveOptions{}) })

	file := fmt.Sprintf(`
services:
  web:
    image: %s
    init: true
  poller:
    image: %s
    stop_grace_period: 1s
    environment:
      TARGET: http://web:8080/
`, private, h.poller)
	spec := func(secrets ...string) *persysv1.WorkloadSpec {
		return &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: file}, ImagePullSecrets: secrets}
	}
	wrong := reg.SecretWith("wrong", reg.Username(), "not-the-password")
	steps := []struct {
		name    string
		secrets map[string]*persysv1.SecretValue
		pull    []string
		reason  persysv1.FailureReason
	}{
		{"no credentials", nil, nil, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{"wrong password", map[string]*persysv1.SecretValue{"wrong": wrong}, []string{"wrong"}, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{"credentials", map[string]*persysv1.SecretValue{"reg": reg.Secret("reg")}, []string{"reg"}, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED},
	}
	name := "private-" + randSuffix(t)
	for i, s := range steps {
		in := inst(name, "u", uint64(i+1), spec(s.pull...))
		in.Secrets = s.secrets
		ws, _, err := h.rt.Apply(ctx, in)
		if s.reason != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
			if err == nil || runtime.ReasonOf(err) != s.reason {
				t.Fatalf("%s: error %v, want %s", s.name, err, s.reason)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Apply: %v", s.name, err)
		}
		if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || service(ws, "web").GetImage() != private {
			t.Fatalf("%s: %s, services %v", s.name, ws.GetState(), ws.GetServices())
		}
	}
	if strings.Contains(h.logs.String(), reg.Password()) || strings.Contains(h.logs.String(), "not-the-password") {
		t.Fatal("a registry password appears in the runtime log")
	}

	// A tag the registry lacks, with good credentials: not found.
	in := inst("missing-"+randSuffix(t), "u", 1, &persysv1.WorkloadSpec{
		Compose:          &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: " + reg.Host() + "/persys/none:1\n"},
		ImagePullSecrets: []string{"reg"},
	})
	in.Secrets = map[string]*persysv1.SecretValue{"reg": reg.Secret("reg")}
	if _, _, err := h.rt.Apply(ctx, in); runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND {
		t.Fatalf("missing tag: %v, want IMAGE_NOT_FOUND", err)
	}
}

// Two agents sharing one engine keep their projects apart, also for the
// same workload name.
func TestComposeNodesApart(t *testing.T) {
	a := newHarness(t)
	b := newHarness(t)
	ctx := ctxT(t)
	name := "shared-" + randSuffix(t)
	spec := func() *persysv1.WorkloadSpec {
		return &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: fmt.Sprintf("services:\n  web:\n    image: %s\n    init: true\n", a.hello)}}
	}
	if _, _, err := a.rt.Apply(ctx, inst(name, "u", 1, spec())); err != nil {
		t.Fatalf("node a: %v", err)
	}
	if _, _, err := b.rt.Apply(ctx, inst(name, "u", 1, spec())); err != nil {
		t.Fatalf("node b: %v", err)
	}
	la, err := a.rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(la) != 1 || len(lb) != 1 || la[0].GetNodeId() == lb[0].GetNodeId() {
		t.Fatalf("lists: a=%v b=%v", la, lb)
	}
	if service(la[0], "web").GetContainerIds()[0] == service(lb[0], "web").GetContainerIds()[0] {
		t.Fatal("both nodes report the same container")
	}
	if _, err := a.rt.Delete(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
	st, err := b.rt.Status(ctx, name)
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("node b after node a's delete: %v, %v", st.GetState(), err)
	}
	// A delete for another uid leaves it alone.
	if existed, err := b.rt.Delete(ctx, name, "other-uid"); err != nil || existed {
		t.Fatalf("Delete of another uid: existed=%v err=%v", existed, err)
	}
	if st, _ := b.rt.Status(ctx, name); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("node b after a delete of another uid: %v", st.GetState())
	}
}
