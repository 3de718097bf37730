package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// env is one test's runtime on the real engine plus a unique workload
// name whose containers are removed when the test ends.
type env struct {
	t   *testing.T
	cli *client.Client
	rt  *Runtime
	img string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cli, tag := images.HelloImage(t)
	rt, err := New(Options{
		Client:      cli,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return &env{t: t, cli: cli, rt: rt, img: tag}
}

// workload returns a unique name and uid and removes every container
// labelled with that name at the end of the test.
func (e *env) workload(prefix string) (name, uid string) {
	e.t.Helper()
	name = "t-" + prefix + "-" + randHex(e.t, 4)
	uid = randHex(e.t, 8)
	e.t.Cleanup(func() {
		ctx := context.Background()
		cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", runtime.LabelWorkload+"="+name)})
		if err != nil {
			e.t.Errorf("cleanup list: %v", err)
			return
		}
		for _, c := range cs.Items {
			if _, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				e.t.Errorf("cleanup remove %s: %v", c.ID, err)
			}
		}
	})
	return name, uid
}

func (e *env) spec(c *persysv1.ContainerSpec) *persysv1.WorkloadSpec {
	if c.Image == "" {
		c.Image = e.img
	}
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Container:    c,
	}
}

func (e *env) apply(inst runtime.Instance) (*persysv1.WorkloadStatus, bool) {
	e.t.Helper()
	st, skipped, err := e.rt.Apply(e.t.Context(), inst)
	if err != nil {
		e.t.Fatalf("Apply %s r%d: %v", inst.Name, inst.Revision, err)
	}
	return st, skipped
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) uint32 {
	t.Helper()
	return uint32(freeport.Port(t, "127.0.0.1"))
}

// eventually polls cond until it returns true or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestApplyLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	name, uid := e.workload("life")
	port := freePort(t)

	volName := "persys-test-" + name
	t.Cleanup(func() {
		if _, err := e.cli.VolumeRemove(context.Background(), volName, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup volume: %v", err)
		}
	})
	bindDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bindDir, "app.conf"), []byte("x=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	spec := e.spec(&persysv1.ContainerSpec{
		Env:           map[string]string{"PORT": "8080", "GREETING": "hi"},
		Ports:         []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: port, Protocol: "tcp", HostIp: "127.0.0.1"}},
		Volumes:       []*persysv1.Volume{{Type: "volume", Source: volName, Target: "/data"}, {Type: "bind", Source: bindDir, Target: "/config", ReadOnly: true}},
		RestartPolicy: "on-failure",
		Labels:        map[string]string{"team": "platform"},
	})
	spec.Resources = &persysv1.Resources{CpuMillis: 250, MemoryBytes: 64 << 20}
	inst := runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec}

	st, skipped := e.apply(inst)
	if skipped {
		t.Fatal("first apply reported skipped")
	}
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetName() != name || st.GetUid() != uid || st.GetRevision() != 1 || st.GetRuntimeId() == "" {
		t.Fatalf("status after apply = %v", st)
	}

	infoRes, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	checkLifecycleContainer(t, info, name, uid, port, volName, bindDir)
	checkBridgeAddress(t, e, st)

	url := "http://127.0.0.1:" + itoa(port) + "/"
	eventually(t, 20*time.Second, "GET "+url, func() (bool, string) {
		body, err := get(ctx, url)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "hello from persys"), body
	})

	// The same revision again changes nothing.
	st2, skipped := e.apply(inst)
	if !skipped || st2.GetRuntimeId() != st.GetRuntimeId() {
		t.Fatalf("re-apply: skipped=%v id=%s, want skipped and id %s", skipped, st2.GetRuntimeId(), st.GetRuntimeId())
	}

	// Revision 2 replaces revision 1 on the same host port.
	inst2 := inst
	inst2.Revision = 2
	inst2.Spec.Container.Env["GREETING"] = "hello again"
	st3, skipped := e.apply(inst2)
	if skipped || st3.GetRevision() != 2 || st3.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st3.GetRuntimeId() == st.GetRuntimeId() {
		t.Fatalf("apply r2: skipped=%v status=%v", skipped, st3)
	}
	if _, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("revision 1 container still there (inspect err %v)", err)
	}
	eventually(t, 20*time.Second, "GET after revision 2", func() (bool, string) {
		body, err := get(ctx, url)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "hello from persys"), body
	})

	got, err := e.rt.Status(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetRevision() != 2 || got.GetRuntimeId() != st3.GetRuntimeId() || got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Errorf("Status = %v", got)
	}
	if n := countListed(t, e.rt, name); n != 1 {
		t.Errorf("List shows %s %d times, want once", name, n)
	}
	checkBridgeAddress(t, e, got)
	checkListedAddresses(t, e, got)

	checkDelete(t, e, name, volName)
}

// checkBridgeAddress checks that st, the status of a running container on
// the default bridge, reports the container's bridge address: the one the
// engine gives, inside the bridge network's subnet, and serving the hello
// image's page on its container port.
func checkBridgeAddress(t *testing.T, e *env, st *persysv1.WorkloadStatus) {
	t.Helper()
	ctx := t.Context()
	res, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br := res.Container.NetworkSettings.Networks["bridge"]
	if br == nil || !br.IPAddress.IsValid() {
		t.Fatalf("engine reports no bridge address: %+v", res.Container.NetworkSettings.Networks)
	}
	if got := st.GetAddresses(); len(got) != 1 || got[0] != br.IPAddress.String() {
		t.Fatalf("addresses = %v, want [%s] (the engine's bridge address)", got, br.IPAddress)
	}
	nw, err := e.cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inSubnet := false
	for _, c := range nw.Network.IPAM.Config {
		inSubnet = inSubnet || c.Subnet.Contains(br.IPAddress)
	}
	if !inSubnet {
		t.Errorf("address %s is outside the bridge's subnets %+v", br.IPAddress, nw.Network.IPAM.Config)
	}
	url := "http://" + net.JoinHostPort(st.GetAddresses()[0], "8080") + "/"
	eventually(t, 20*time.Second, "GET "+url, func() (bool, string) {
		body, err := get(ctx, url)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "hello from persys"), body
	})
}

// checkListedAddresses checks that List reports st's workload with the
// addresses Status gave.
func checkListedAddresses(t *testing.T, e *env, st *persysv1.WorkloadStatus) {
	t.Helper()
	listed, err := e.rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range listed {
		if l.GetName() == st.GetName() && !slices.Equal(l.GetAddresses(), st.GetAddresses()) {
			t.Errorf("List addresses %v, Status addresses %v", l.GetAddresses(), st.GetAddresses())
		}
	}
}

// checkDelete deletes workload name and checks it is gone from Status and
// List, a second Delete finds nothing, and its named volume stays.
func checkDelete(t *testing.T, e *env, name, volName string) {
	t.Helper()
	ctx := t.Context()
	existed, err := e.rt.Delete(ctx, name, "")
	if err != nil || !existed {
		t.Fatalf("Delete = %v, %v; want true, nil", existed, err)
	}
	if n := countListed(t, e.rt, name); n != 0 {
		t.Errorf("List still shows %s after Delete", name)
	}
	got, err := e.rt.Status(ctx, name)
	if err != nil || got.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status after Delete = %v, %v; want MISSING", got, err)
	}
	if existed, err := e.rt.Delete(ctx, name, ""); err != nil || existed {
		t.Errorf("second Delete = %v, %v; want false, nil", existed, err)
	}
	// Named volumes are user data: Delete keeps them.
	if _, err := e.cli.VolumeInspect(ctx, volName, client.VolumeInspectOptions{}); err != nil {
		t.Errorf("named volume gone after Delete: %v", err)
	}
}

// checkLifecycleContainer checks what TestApplyLifecycle's first revision
// asked of the engine: name, resources, env, port, labels, restart policy,
// init and mounts.
func checkLifecycleContainer(t *testing.T, info container.InspectResponse, name, uid string, port uint32, volName, bindDir string) {
	t.Helper()
	if got, want := info.Name, "/"+containerName(name, uid, 1); got != want {
		t.Errorf("container name = %q, want %q", got, want)
	}
	if info.HostConfig.NanoCPUs != 250_000_000 {
		t.Errorf("NanoCPUs = %d, want 250000000", info.HostConfig.NanoCPUs)
	}
	if info.HostConfig.Memory != 64<<20 {
		t.Errorf("Memory = %d, want %d", info.HostConfig.Memory, 64<<20)
	}
	for _, kv := range []string{"PORT=8080", "GREETING=hi"} {
		if !slices.Contains(info.Config.Env, kv) {
			t.Errorf("env %v lacks %s", info.Config.Env, kv)
		}
	}
	b := info.HostConfig.PortBindings[network.MustParsePort("8080/tcp")]
	if len(b) != 1 || b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != itoa(port) {
		t.Errorf("port bindings = %v", info.HostConfig.PortBindings)
	}
	for k, v := range map[string]string{
		"team": "platform", runtime.LabelManaged: "true", runtime.LabelWorkload: name,
		runtime.LabelUID: uid, runtime.LabelRevision: "1",
	} {
		if info.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, info.Config.Labels[k], v)
		}
	}
	if info.HostConfig.RestartPolicy.Name != container.RestartPolicyOnFailure {
		t.Errorf("restart policy = %q", info.HostConfig.RestartPolicy.Name)
	}
	if info.HostConfig.Init == nil || !*info.HostConfig.Init || info.HostConfig.Privileged {
		t.Errorf("init = %v privileged = %v", info.HostConfig.Init, info.HostConfig.Privileged)
	}
	var sawVolume, sawBind bool
	for _, m := range info.Mounts {
		switch {
		case m.Type == mount.TypeVolume && m.Name == volName && m.Destination == "/data" && m.RW:
			sawVolume = true
		case m.Type == mount.TypeBind && m.Source == bindDir && m.Destination == "/config" && !m.RW:
			sawBind = true
		}
	}
	if !sawVolume || !sawBind {
		t.Errorf("mounts = %+v, want volume %s at /data (rw) and bind %s at /config (ro)", info.Mounts, volName, bindDir)
	}

}

// TestApplyMissingImage: an image that is not local and whose registry
// cannot be reached (Docker Hub from an offline machine; online, Hub
// answers "pull access denied" for a repository it does not show) is
// IMAGE_PULL_FAILED. A registry that answers "not found" is
// IMAGE_NOT_FOUND: see TestPrivateRegistryPull.
func TestApplyMissingImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name, uid := e.workload("noimg")
	_, _, err := e.rt.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1,
		Spec: e.spec(&persysv1.ContainerSpec{Image: "persys-does-not-exist:v0"})})
	if got := runtime.ReasonOf(err); got != persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED {
		t.Fatalf("Apply err = %v (reason %s), want IMAGE_PULL_FAILED", err, got)
	}
	st, err := e.rt.Status(t.Context(), name)
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status = %v, %v; want MISSING", st, err)
	}
}

func TestApplyStoppedAndExited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	t.Run("desired stopped", func(t *testing.T) {
		name, uid := e.workload("stopped")
		spec := e.spec(&persysv1.ContainerSpec{})
		spec.DesiredState = persysv1.DesiredState_DESIRED_STATE_STOPPED
		inst := runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec}
		st, skipped := e.apply(inst)
		if skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
			t.Fatalf("apply stopped: skipped=%v status=%v", skipped, st)
		}
		infoRes, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
		info := infoRes.Container
		if err != nil || info.State.Running {
			t.Fatalf("container running=%v err=%v, want created and not running", info.State != nil && info.State.Running, err)
		}
		if _, skipped := e.apply(inst); !skipped {
			t.Error("re-apply of stopped revision not skipped")
		}
		// Running it now (a new revision) replaces the stopped container.
		inst.Revision = 2
		inst.Spec.DesiredState = persysv1.DesiredState_DESIRED_STATE_RUNNING
		st2, _ := e.apply(inst)
		if st2.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || len(st2.GetAddresses()) == 0 {
			t.Fatalf("apply running: %v, want RUNNING with an address", st2)
		}
		// And stopping it in a third revision stops it.
		inst.Revision = 3
		inst.Spec.DesiredState = persysv1.DesiredState_DESIRED_STATE_STOPPED
		if st3, _ := e.apply(inst); st3.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED || len(st3.GetAddresses()) != 0 {
			t.Fatalf("apply stopped again: %v, want STOPPED without addresses", st3)
		}
	})

	t.Run("exit non-zero", func(t *testing.T) {
		name, uid := e.workload("exit")
		inst := runtime.Instance{Name: name, UID: uid, Revision: 1,
			Spec: e.spec(&persysv1.ContainerSpec{Args: []string{"exit", "3"}})}
		first, _ := e.apply(inst)
		var st *persysv1.WorkloadStatus
		eventually(t, 20*time.Second, "FAILED status", func() (bool, string) {
			var err error
			st, err = e.rt.Status(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED, st.String()
		})
		if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED || st.GetExitCode() != 3 {
			t.Errorf("status = %v, want CONTAINER_EXITED with exit code 3", st)
		}
		// Applying the same revision again recreates the exited container.
		again, skipped := e.apply(inst)
		if skipped || again.GetRuntimeId() == first.GetRuntimeId() {
			t.Errorf("re-apply of exited container: skipped=%v id %s (was %s), want a new container", skipped, again.GetRuntimeId(), first.GetRuntimeId())
		}
	})
}

func TestApplyPortConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	port := freePort(t)
	ports := func() []*persysv1.PortMapping {
		return []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: port, HostIp: "127.0.0.1"}}
	}
	a, auid := e.workload("porta")
	e.apply(runtime.Instance{Name: a, UID: auid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{Ports: ports()})})
	b, buid := e.workload("portb")
	_, _, err := e.rt.Apply(t.Context(), runtime.Instance{Name: b, UID: buid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{Ports: ports()})})
	if got := runtime.ReasonOf(err); got != persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT {
		t.Fatalf("second apply on port %d: err = %v (reason %s), want PORT_CONFLICT", port, err, got)
	}
	// Nothing half-made is left behind.
	if st, err := e.rt.Status(t.Context(), b); err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status of failed workload = %v, %v; want MISSING", st, err)
	}
}

// TestCreatedContainerFailingStartIsRemoved: a container of the revision
// that was created but never started (the agent stopped between the two)
// and whose host port something else took meanwhile fails its start
// PORT_CONFLICT and is removed, so the next apply of the revision, with
// the other port the scheduler then gives, creates and runs it.
func TestCreatedContainerFailingStartIsRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name, uid := e.workload("created")
	taken := freePort(t)
	spec := func(port uint32) *persysv1.WorkloadSpec {
		return e.spec(&persysv1.ContainerSpec{Ports: []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: port, HostIp: "127.0.0.1"}}})
	}
	inst := runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec(taken)}
	cs, err := buildCreateSpec(inst, e.rt.stopSeconds())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{Config: cs.config, HostConfig: cs.host, Name: cs.name}); err != nil {
		t.Fatalf("create: %v", err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	_, _, err = e.rt.Apply(t.Context(), inst)
	if got := runtime.ReasonOf(err); got != persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT {
		t.Fatalf("apply over the created container with port %d taken: err = %v (reason %s), want PORT_CONFLICT", taken, err, got)
	}
	if st, err := e.rt.Status(t.Context(), name); err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Fatalf("Status after the failed start = %v, %v; want MISSING (the container removed)", st, err)
	}
	other := freePort(t)
	inst.Spec = spec(other)
	if st, _ := e.apply(inst); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply with port %d: %v, want RUNNING", other, st)
	}
}

func TestWatchReportsRemoval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name, uid := e.workload("watch")
	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := e.rt.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Removed behind the runtime's back.
	if _, err := e.cli.ContainerRemove(t.Context(), st.GetRuntimeId(), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed early")
			}
			seen = got == name
		case <-timeout:
			t.Fatalf("watch did not report %s", name)
		}
	}
	if got, err := e.rt.Status(t.Context(), name); err != nil || got.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status after removal = %v, %v; want MISSING", got, err)
	}
	cancel()
	closed := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-closed:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

func countListed(t *testing.T, rt *Runtime, name string) int {
	t.Helper()
	all, err := rt.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	n := 0
	for _, st := range all {
		if st.GetName() == name {
			n++
		}
	}
	return n
}

func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), errors.New(resp.Status)
	}
	return string(body), nil
}

func itoa(p uint32) string { return strconv.FormatUint(uint64(p), 10) }

// Two agents sharing one engine each see only their own node's containers,
// so neither reports (and the scheduler never collects as an orphan) what
// the other runs.
func TestNodeScopedRuntimes(t *testing.T) {
	e := newEnv(t)
	mk := func(node string) *Runtime {
		rt, err := New(Options{Client: e.cli, StopTimeout: 2 * time.Second, NodeID: node})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	a, b := mk("node-a-"+randHex(t, 3)), mk("node-b-"+randHex(t, 3))
	name, uid := e.workload("scoped")
	st, _, err := a.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
	if err != nil {
		t.Fatal(err)
	}
	infoRes, err := e.cli.ContainerInspect(t.Context(), st.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Labels[runtime.LabelNode] != a.nodeID {
		t.Fatalf("node label = %q, want %q", info.Config.Labels[runtime.LabelNode], a.nodeID)
	}
	if n := countListed(t, a, name); n != 1 {
		t.Fatalf("owner lists %d copies, want 1", n)
	}
	if n := countListed(t, b, name); n != 0 {
		t.Fatalf("another node's runtime lists %d copies, want 0", n)
	}
	if existed, err := b.Delete(t.Context(), name, ""); err != nil || existed {
		t.Fatalf("another node's Delete = %v, %v; want false, nil", existed, err)
	}
	if n := countListed(t, a, name); n != 1 {
		t.Fatalf("after the other node's delete the owner lists %d copies, want 1", n)
	}
	// A workload moving between two nodes on one engine runs on both at
	// once: the second copy of the same revision must not clash by name.
	stB, _, err := b.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
	if err != nil {
		t.Fatalf("second node's copy of the same revision: %v", err)
	}
	if stB.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || stB.GetRuntimeId() == st.GetRuntimeId() {
		t.Fatalf("second node's copy: %v (first copy %s)", stB, st.GetRuntimeId())
	}
	if n := countListed(t, a, name); n != 1 {
		t.Fatalf("with a copy on each node the owner lists %d copies, want 1", n)
	}
}

// TestApplyDynamicPort: a dynamic port bound to the scheduler's choice
// (as the agent binds it) is published on that host port and answers.
func TestApplyDynamicPort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	port := freePort(t)
	name, uid := e.workload("dyn")
	spec := e.spec(&persysv1.ContainerSpec{Env: map[string]string{"PORT": "8080"},
		Ports: []*persysv1.PortMapping{{ContainerPort: 8080, Protocol: "tcp", HostIp: "127.0.0.1", Dynamic: true}}})
	bound, err := specaccess.BindDynamic(spec, []uint32{port})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: bound})
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("status after apply = %v", st)
	}
	info, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b := info.Container.HostConfig.PortBindings[network.MustParsePort("8080/tcp")]; len(b) != 1 || b[0].HostPort != itoa(port) {
		t.Fatalf("bindings of 8080/tcp = %v, want host port %d", b, port)
	}
	url := "http://127.0.0.1:" + itoa(port) + "/"
	eventually(t, 20*time.Second, "GET "+url, func() (bool, string) {
		body, err := get(ctx, url)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "hello from persys"), body
	})
}
