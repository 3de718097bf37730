package scheduler_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// recordingRuntime is the sim runtime that remembers the secrets each
// apply delivered to it, as the agent handed them over.
type recordingRuntime struct {
	*sim.Runtime
	mu       sync.Mutex
	received map[string]map[string]*persysv1.SecretValue
}

func (r *recordingRuntime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	got := map[string]*persysv1.SecretValue{}
	for name, v := range inst.Secrets {
		got[name] = proto.Clone(v).(*persysv1.SecretValue)
	}
	r.mu.Lock()
	r.received[inst.Name] = got
	r.mu.Unlock()
	return r.Runtime.Apply(ctx, inst)
}

func (r *recordingRuntime) secretsOf(name string) (map[string]*persysv1.SecretValue, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, ok := r.received[name]
	return got, ok
}

// secretEnv is a scheduler with a keyring (or none) and, optionally, one
// agent on the recording sim runtime, over embedded etcd and mTLS.
type secretEnv struct {
	t       *testing.T
	store   *store.Store
	admin   persysv1grpc.ControlServiceClient
	logs    *lockedBuffer
	rt      *recordingRuntime
	keyPath string
	bundle  *pki.Bundle
	addr    string
}

// secretEnvOptions shape a secretEnv.
type secretEnvOptions struct {
	keyring, agent bool
	// retryBase is the first backoff (default 200ms).
	retryBase time.Duration
}

func newSecretEnv(t *testing.T, withKeyring, withAgent bool) *secretEnv {
	t.Helper()
	return newSecretEnvWith(t, secretEnvOptions{keyring: withKeyring, agent: withAgent})
}

func newSecretEnvWith(t *testing.T, o secretEnvOptions) *secretEnv {
	t.Helper()
	withKeyring, withAgent := o.keyring, o.agent
	if o.retryBase <= 0 {
		o.retryBase = 200 * time.Millisecond
	}
	st, _ := storetest.New(t)
	node := "sec-node-" + randomHex(3)
	b, err := pki.Bootstrap(t.TempDir(), []string{node}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &secretEnv{t: t, store: st, logs: &lockedBuffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var k *secrets.Keyring
	if withKeyring {
		e.keyPath = filepath.Join(t.TempDir(), "secrets.key")
		if _, err := secrets.GenerateKeyFile(e.keyPath); err != nil {
			t.Fatal(err)
		}
		if k, err = secrets.Load(e.keyPath); err != nil {
			t.Fatal(err)
		}
	}
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{
		Store: st, Logger: log.With("component", "scheduler"),
		Registry: prometheus.NewRegistry(), HeartbeatInterval: heartbeat, LeaseTTL: leaseTTL,
		ResyncInterval: 10 * time.Minute, RetryBase: o.retryBase, RetryMax: max(time.Second, o.retryBase),
		MaxAttempts: -1, Secrets: k,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() { defer wg.Done(); _ = scheduler.Serve(ctx, ln, s, serverTLS) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	secPoll(t, "scheduler ready", func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	e.bundle, e.addr = b, ln.Addr().String()
	e.admin = persysv1grpc.NewControlServiceClient(secDial(t, ln.Addr().String(), b.Admin))
	if withAgent {
		e.startAgent(node, b.Agents[node], ln.Addr().String(), log)
	}
	return e
}

func secDial(t *testing.T, addr string, f pki.Files) *grpc.ClientConn {
	t.Helper()
	cfg, err := pki.ClientTLS(f, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (e *secretEnv) startAgent(id string, files pki.Files, schedAddr string, log *slog.Logger) {
	t := e.t
	simRT, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = &recordingRuntime{Runtime: simRT, received: map[string]map[string]*persysv1.SecretValue{}}
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := agent.DialScheduler([]string{schedAddr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		NodeID: id, AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{e.rt},
		HeartbeatInterval: heartbeat,
		Channel:           persysv1grpc.NewNodeChannelServiceClient(conn),
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           t.TempDir(), Logger: log.With("component", "agent", "node", id), Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = conn.Close() })
	secPoll(t, "node ready", func() (bool, string) {
		n, err := e.admin.GetNode(secCtx(t), &persysv1.GetNodeRequest{Id: id})
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == persysv1.NodeState_NODE_STATE_READY, n.GetState().String()
	})
}

func secCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// secPoll checks cond on a ticker until it holds or waitLong passes.
func secPoll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(waitLong)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", waitLong, what, detail)
		case <-tick.C:
		}
	}
}

func (e *secretEnv) put(name string, typ persysv1.SecretType, kv ...string) *persysv1.SecretInfo {
	e.t.Helper()
	data := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		data[kv[i]] = []byte(kv[i+1])
	}
	info, err := e.admin.PutSecret(secCtx(e.t), &persysv1.PutSecretRequest{Name: name, Type: typ, Data: data})
	if err != nil {
		e.t.Fatalf("PutSecret %s: %v", name, err)
	}
	return info
}

func (e *secretEnv) waitState(name string, want persysv1.ActualState, reason persysv1.FailureReason) *persysv1.WorkloadStatus {
	e.t.Helper()
	var last *persysv1.WorkloadStatus
	secPoll(e.t, name+" "+want.String(), func() (bool, string) {
		v, err := e.admin.GetWorkload(secCtx(e.t), &persysv1.GetWorkloadRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		last = v.GetStatus()
		return last.GetState() == want && (reason == 0 || last.GetReason() == reason),
			last.GetState().String() + " " + last.GetReason().String() + " " + last.GetMessage()
	})
	return last
}

const opaqueType = persysv1.SecretType_SECRET_TYPE_OPAQUE

func containerSpec() *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 * mib},
		Container:    &persysv1.ContainerSpec{Image: "sim/app:1"},
	}
}

// TestSecretsDeliveredOnlyToTheirWorkload checks that an apply carries the
// values of the keys the workload references and nothing else, that reads
// never return values, and that values reach no event and no log line.
func TestSecretsDeliveredOnlyToTheirWorkload(t *testing.T) {
	e := newSecretEnv(t, true, true)
	const (
		dbPass   = "s3cr3t-db-password-0001"
		dbUser   = "db-user-value-0002"
		dbUnused = "unused-value-0003"
		other    = "other-secret-value-0004"
		regPass  = "registry-password-0005"
	)
	values := []string{dbPass, dbUser, dbUnused, other, regPass}
	info := e.put("db", opaqueType, "password", dbPass, "user", dbUser, "unused", dbUnused)
	if info.GetVersion() != 1 || strings.Join(info.GetKeys(), ",") != "password,unused,user" {
		t.Fatalf("PutSecret info = %v, want version 1 with keys password, unused, user", info)
	}
	e.put("other", opaqueType, "v", other)
	e.put("reg", persysv1.SecretType_SECRET_TYPE_REGISTRY, "server", "registry.local:5000", "username", "u", "password", regPass)

	spec := containerSpec()
	spec.SecretEnv = []*persysv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "db", Key: "password"}}
	spec.SecretFiles = []*persysv1.SecretFile{{Secret: "db", Key: "user", Path: "/run/db/user"}}
	spec.ImagePullSecrets = []string{"reg"}
	if _, err := e.admin.ApplyWorkload(secCtx(t), &persysv1.ApplyRequest{Name: "web", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	e.waitState("web", persysv1.ActualState_ACTUAL_STATE_RUNNING, 0)
	got, ok := e.rt.secretsOf("web")
	if !ok {
		t.Fatal("the runtime saw no apply of web")
	}
	if len(got) != 2 || got["db"] == nil || got["reg"] == nil {
		t.Fatalf("delivered secrets %v, want exactly db and reg", keysOf(got))
	}
	db := got["db"].GetData()
	if len(db) != 2 || string(db["password"]) != dbPass || string(db["user"]) != dbUser {
		t.Fatalf("db delivered with keys %v, want password and user with their values", mapKeys(db))
	}
	if string(got["reg"].GetData()["password"]) != regPass || got["reg"].GetType() != persysv1.SecretType_SECRET_TYPE_REGISTRY {
		t.Fatal("reg was not delivered whole with its type")
	}

	// A workload without references receives nothing.
	if _, err := e.admin.ApplyWorkload(secCtx(t), &persysv1.ApplyRequest{Name: "plain", Spec: containerSpec()}); err != nil {
		t.Fatal(err)
	}
	e.waitState("plain", persysv1.ActualState_ACTUAL_STATE_RUNNING, 0)
	if got, _ := e.rt.secretsOf("plain"); len(got) != 0 {
		t.Fatalf("plain received secrets %v", keysOf(got))
	}

	checkSecretReadsHideValues(t, e, values)

	// Update increments the version and keeps the creation time.
	upd := e.put("db", opaqueType, "password", dbPass, "user", dbUser)
	if upd.GetVersion() != 2 || !proto.Equal(upd.GetCreatedAt(), info.GetCreatedAt()) {
		t.Fatalf("update: version %d created %v, want version 2 created %v", upd.GetVersion(), upd.GetCreatedAt(), info.GetCreatedAt())
	}
	if _, err := e.admin.DeleteSecret(secCtx(t), &persysv1.DeleteSecretRequest{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.GetSecret(secCtx(t), &persysv1.GetSecretRequest{Name: "other"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetSecret after delete = %v, want NotFound", err)
	}
	if _, err := e.admin.PutSecret(secCtx(t), &persysv1.PutSecretRequest{Name: "bad/name", Type: opaqueType,
		Data: map[string][]byte{"k": []byte("v")}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("PutSecret of a bad name = %v, want InvalidArgument", err)
	}

	checkSecretEventsHideValues(t, e, values)
}

// checkSecretReadsHideValues: reads carry names, types and key names,
// none of values.
func checkSecretReadsHideValues(t *testing.T, e *secretEnv, values []string) {
	t.Helper()
	g, err := e.admin.GetSecret(secCtx(t), &persysv1.GetSecretRequest{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.admin.ListSecrets(secCtx(t), &persysv1.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.GetSecrets()) != 3 {
		t.Fatalf("ListSecrets = %d secrets, want 3", len(l.GetSecrets()))
	}
	for _, m := range []proto.Message{g, l} {
		raw, _ := proto.Marshal(m)
		for _, v := range values {
			if bytes.Contains(raw, []byte(v)) {
				t.Fatalf("a read returned the value of a secret: %T", m)
			}
		}
	}
}

// checkSecretEventsHideValues: events name the secret changes, and
// neither they nor the log carry any of values.
func checkSecretEventsHideValues(t *testing.T, e *secretEnv, values []string) {
	t.Helper()
	var evs *persysv1.ListEventsResponse
	secPoll(t, "secret events", func() (bool, string) {
		var err error
		evs, err = e.admin.ListEvents(secCtx(t), &persysv1.ListEventsRequest{Limit: 1000})
		if err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		for _, ev := range evs.GetEvents() {
			seen[ev.GetType()] = true
		}
		return seen["SecretCreated"] && seen["SecretUpdated"] && seen["SecretDeleted"], "types so far: " + strings.Join(mapKeysBool(seen), ",")
	})
	raw, _ := proto.Marshal(evs)
	logs := e.logs.Bytes()
	for _, v := range values {
		if bytes.Contains(raw, []byte(v)) {
			t.Fatal("an event carries a secret value")
		}
		if bytes.Contains(logs, []byte(v)) {
			t.Fatal("a log line carries a secret value")
		}
	}
	if !bytes.Contains(logs, []byte("secret created")) {
		t.Fatal("the log capture saw no secret line: is it wired?")
	}
}

// TestMissingSecretFailsThenRuns: a workload whose secret does not exist
// fails with SECRET_NOT_FOUND, and runs once the secret is created. The
// backoff is an hour: only the secret's creation can trigger the retry.
func TestMissingSecretFailsThenRuns(t *testing.T) {
	e := newSecretEnvWith(t, secretEnvOptions{keyring: true, agent: true, retryBase: time.Hour})
	spec := containerSpec()
	spec.SecretEnv = []*persysv1.SecretEnv{{Name: "TOKEN", Secret: "late", Key: "token"}}
	if _, err := e.admin.ApplyWorkload(secCtx(t), &persysv1.ApplyRequest{Name: "app", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	st := e.waitState("app", persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND)
	if !strings.Contains(st.GetMessage(), `"late"`) || !strings.Contains(st.GetMessage(), "secret_env[0]") {
		t.Fatalf("failure message %q does not name the secret and the field", st.GetMessage())
	}
	if _, ok := e.rt.secretsOf("app"); ok {
		t.Fatal("the agent was called although the secret is missing")
	}
	// A secret without the key is still not enough.
	e.put("late", opaqueType, "other", "x")
	secPoll(t, "missing key reported", func() (bool, string) {
		v, err := e.admin.GetWorkload(secCtx(t), &persysv1.GetWorkloadRequest{Name: "app"})
		if err != nil {
			return false, err.Error()
		}
		m := v.GetStatus().GetMessage()
		return strings.Contains(m, `no key "token"`), m
	})
	e.put("late", opaqueType, "token", "tok-value-42")
	e.waitState("app", persysv1.ActualState_ACTUAL_STATE_RUNNING, 0)
	got, _ := e.rt.secretsOf("app")
	if string(got["late"].GetData()["token"]) != "tok-value-42" || len(got["late"].GetData()) != 1 {
		t.Fatal("the apply after the secret appeared did not carry exactly its token")
	}
}

// TestSecretsWithoutKeyring: the API refuses with FailedPrecondition, and
// a VM asking for a generated password cannot be applied.
func TestSecretsWithoutKeyring(t *testing.T) {
	e := newSecretEnv(t, false, false)
	_, err := e.admin.PutSecret(secCtx(t), &persysv1.PutSecretRequest{Name: "x", Type: opaqueType, Data: map[string][]byte{"k": []byte("v")}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("PutSecret without keyring = %v, want FailedPrecondition naming --secrets-key-file", err)
	}
	if _, err := e.admin.ListSecrets(secCtx(t), &persysv1.ListSecretsRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ListSecrets without keyring = %v, want FailedPrecondition", err)
	}
}

// TestSecretCallsForwardedForNonAdmins: the gateway forwards the user's
// role; the scheduler refuses secret calls for any role but admin.
func TestSecretCallsForwardedForNonAdmins(t *testing.T) {
	e := newSecretEnv(t, true, false)
	gw := persysv1grpc.NewControlServiceClient(secDial(t, e.addr, e.bundle.Gateway))
	for _, role := range []string{"viewer", "operator"} {
		ctx := metadata.AppendToOutgoingContext(secCtx(t), contract.MetadataUser, "u-"+role, contract.MetadataRole, role)
		if _, err := gw.ListSecrets(ctx, &persysv1.ListSecretsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ListSecrets for a %s = %v, want PermissionDenied", role, err)
		}
		if _, err := gw.PutSecret(ctx, &persysv1.PutSecretRequest{Name: "x", Type: opaqueType,
			Data: map[string][]byte{"k": []byte("v")}}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("PutSecret for a %s = %v, want PermissionDenied", role, err)
		}
	}
	ctx := metadata.AppendToOutgoingContext(secCtx(t), contract.MetadataUser, "alice", contract.MetadataRole, "admin")
	if _, err := gw.PutSecret(ctx, &persysv1.PutSecretRequest{Name: "x", Type: opaqueType,
		Data: map[string][]byte{"k": []byte("v")}}); err != nil {
		t.Fatalf("PutSecret for an admin through the gateway: %v", err)
	}
}

// TestGeneratedVMPassword: applying a VM with login.generate_password
// creates its password secret once; re-applies keep the same password.
func TestGeneratedVMPassword(t *testing.T) {
	e := newSecretEnv(t, true, false)
	spec := vmSpecWithGeneratedPassword("vm1-login")
	if _, err := e.admin.ApplyWorkload(secCtx(t), &persysv1.ApplyRequest{Name: "vm1", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	sec, _, err := e.store.GetSecret(context.Background(), "vm1-login")
	if err != nil {
		t.Fatalf("password secret not created: %v", err)
	}
	if keys := sec.GetInfo().GetKeys(); len(keys) != 1 || keys[0] != "password" {
		t.Fatalf("generated secret keys = %v, want [password]", keys)
	}
	k, err := secrets.Load(e.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	data, err := k.Open(sec)
	if err != nil {
		t.Fatal(err)
	}
	pw := data["password"]
	if len(pw) < 20 {
		t.Fatalf("generated password has %d characters, want at least 20", len(pw))
	}
	spec2 := proto.Clone(spec).(*persysv1.WorkloadSpec)
	spec2.Vm.Vcpus = 2
	if _, err := e.admin.ApplyWorkload(secCtx(t), &persysv1.ApplyRequest{Name: "vm1", Spec: spec2}); err != nil {
		t.Fatal(err)
	}
	again, _, err := e.store.GetSecret(context.Background(), "vm1-login")
	if err != nil {
		t.Fatal(err)
	}
	if again.GetInfo().GetVersion() != 1 {
		t.Fatalf("re-apply changed the password secret (version %d)", again.GetInfo().GetVersion())
	}
	if bytes.Contains(e.logs.Bytes(), pw) {
		t.Fatal("the generated password reached the log")
	}
}

func vmSpecWithGeneratedPassword(secret string) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_VM,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 256 * mib},
		Vm: &persysv1.VMSpec{
			Vcpus: 1, MemoryBytes: 256 * mib,
			KernelBoot: &persysv1.VMKernelBoot{Pool: "default", Kernel: "vmlinuz", Initrd: "initrd.img"},
			Login:      &persysv1.VMLogin{User: "persys", GeneratePassword: true, PasswordSecret: secret},
		},
	}
}

func keysOf(m map[string]*persysv1.SecretValue) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapKeys(m map[string][]byte) []string {
	return secrets.SortedKeys(m)
}

func mapKeysBool(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
