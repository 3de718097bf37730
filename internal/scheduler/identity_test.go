package scheduler_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// idEnv is one scheduler with identity calls on (CA folder, revocation
// watch, TLS that verifies client certificates only when given) and a log
// captured in memory.
type idEnv struct {
	t       *testing.T
	bundle  *pki.Bundle
	store   *store.Store
	etcd    *clientv3.Client
	sched   *scheduler.Scheduler
	holder  *pki.Holder
	addr    string
	admin   persysv1grpc.ControlServiceClient
	offset  atomic.Int64 // added to the scheduler's clock
	logs    *syncBuffer
	logger  *slog.Logger
	prefix  string
	agents  map[string]func()
	agentMu sync.Mutex
	// renewAgents, when set, makes startSimAgent renew the agent's
	// certificate through the scheduler at this fraction.
	renewAgents float64
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type idOptions struct {
	certValidity time.Duration
	// schedCert, when set, replaces the scheduler's certificate with one
	// of this lifetime, renewed locally at renewFraction.
	schedCert     time.Duration
	renewFraction float64
	// staleRecheck, when set, renews the scheduler's certificate as soon
	// as the CA was rotated.
	staleRecheck time.Duration
	nodes        []string // statically issued agents
	// noCA starts the scheduler without a CA folder.
	noCA bool
}

// poll waits until cond holds, checking on a ticker, or fails after timeout.
func poll(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, detail)
		case <-tick.C:
		}
	}
}

func newIDEnv(t *testing.T, o idOptions) *idEnv {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), o.nodes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, etcd := storetest.New(t)
	e := &idEnv{t: t, bundle: b, store: st, etcd: etcd, logs: &syncBuffer{}, prefix: st.Prefix(), agents: map[string]func(){}}
	e.logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.schedCert > 0 {
		ca, err := pki.LoadCA(b.Dir)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: "scheduler", Role: pki.RoleScheduler,
			DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: o.schedCert})
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteIdentity(b.Dir, "scheduler", certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	e.holder, err = pki.LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{
		Store:             st,
		Logger:            e.logger.With("component", "scheduler"),
		Registry:          prometheus.NewRegistry(),
		HeartbeatInterval: heartbeat,
		LeaseTTL:          leaseTTL,
		ResyncInterval:    10 * time.Minute,
		RescheduleGrace:   500 * time.Millisecond,
		RetryBase:         200 * time.Millisecond,
		RetryMax:          2 * time.Second,
		Now:               func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noCA {
		s.SetIdentity(scheduler.IdentityConfig{CADir: b.Dir, CertValidity: o.certValidity})
	}
	e.holder.SetRevocationChecker(s.Revocations())
	e.sched = s
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	run := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f() }()
	}
	run(func() error { return s.Run(ctx) })
	run(func() error { return scheduler.Serve(ctx, ln, s, e.holder.ServerTLS(tls.VerifyClientCertIfGiven)) })
	run(func() error { return s.RunIdentity(ctx) })
	if o.schedCert > 0 {
		r := &pki.Renewer{Holder: e.holder, Renew: pki.LocalRenew(b.Dir, o.schedCert), Fraction: o.renewFraction, Logger: e.logger}
		if o.staleRecheck > 0 {
			r.Stale, r.Recheck = pki.SignedByOtherCA(b.Dir), o.staleRecheck
		}
		run(func() error { return r.Run(ctx) })
	}
	t.Cleanup(func() {
		e.agentMu.Lock()
		for _, stop := range e.agents {
			stop()
		}
		e.agentMu.Unlock()
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("scheduler: %v", err)
			}
		}
	})
	poll(t, "scheduler ready", waitLong, func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	e.admin = persysv1grpc.NewControlServiceClient(e.dial(b.Admin))
	return e
}

func (e *idEnv) dial(f pki.Files) *grpc.ClientConn {
	e.t.Helper()
	cfg, err := pki.ClientTLS(f, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.dialTLS(cfg)
}

func (e *idEnv) dialTLS(cfg *tls.Config) *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *idEnv) token(ttl time.Duration, maxUses int32, labels map[string]string) *persysv1.CreateJoinTokenResponse {
	e.t.Helper()
	resp, err := e.admin.CreateJoinToken(ctxT(e.t), &persysv1.CreateJoinTokenRequest{TtlSeconds: int64(ttl / time.Second), MaxUses: maxUses, Labels: labels})
	if err != nil {
		e.t.Fatalf("CreateJoinToken: %v", err)
	}
	return resp
}

func (e *idEnv) join(nodeID, token, hash string) (pki.Files, map[string]string, string, error) {
	dir := e.t.TempDir()
	files, labels, err := agent.Join(ctxT(e.t), agent.JoinConfig{
		Schedulers: []string{e.addr}, Token: token, CAHash: hash, NodeID: nodeID, DataDir: dir,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Logger: e.logger.With("component", "agent", "node", nodeID),
		// Refusals (a wrong CA hash among them) must end the retries at once.
		RetryFor: time.Minute,
	})
	return files, labels, dir, err
}

// identityKeys reads every key under the identity key spaces raw.
func (e *idEnv) identityKeys() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, d := range []string{"jointokens/", "identities/", "revocations/"} {
		resp, err := e.etcd.Get(ctxT(e.t), e.prefix+"/"+d, clientv3.WithPrefix())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
	}
	return out
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestJoinNode(t *testing.T) {
	e := newIDEnv(t, idOptions{})
	tok := e.token(time.Hour, 1, map[string]string{"zone": "b"})
	if err := pki.ValidateCAHash(tok.GetCaHash()); err != nil {
		t.Fatal(err)
	}
	files, labels, dir, err := e.join("joined-1", tok.GetToken(), tok.GetCaHash())
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if labels["zone"] != "b" {
		t.Errorf("labels = %v, want zone=b", labels)
	}
	if got, err := agent.JoinLabels(dir); err != nil || got["zone"] != "b" {
		t.Errorf("JoinLabels = %v, %v", got, err)
	}
	h, err := pki.LoadHolder(files)
	if err != nil {
		t.Fatalf("joined identity does not load: %v", err)
	}
	id, err := pki.IdentityFromCert(h.Leaf())
	if err != nil || id.CommonName != "joined-1" || id.Role != pki.RoleAgent {
		t.Fatalf("identity = %+v, %v; want joined-1 agent", id, err)
	}
	ca, err := pki.LoadCA(e.bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Verify(h.Leaf()); err != nil {
		t.Fatalf("joined certificate does not chain to the CA: %v", err)
	}
	// The key was made on the node: 0600, and it is not anywhere in etcd.
	st, err := os.Stat(files.Key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", st.Mode(), err)
	}
	keyPEM, _ := os.ReadFile(files.Key)
	_, secret, _ := strings.Cut(tok.GetToken(), ".")
	all, err := e.etcd.Get(ctxT(t), e.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		if bytes.Contains(kv.Value, []byte(secret)) || bytes.Contains(kv.Value, keyPEM[30:80]) {
			t.Fatalf("etcd key %s holds the token secret or the node key", kv.Key)
		}
	}
	rec := e.identityKeys()[e.prefix+"/identities/nodes/joined-1"]
	if !strings.Contains(rec, id.Serial) {
		t.Fatalf("identity record %q lacks serial %s", rec, id.Serial)
	}
	// The joined identity speaks mTLS with the scheduler.
	hb, err := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS(""))).Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "joined-1"})
	if err != nil || !hb.GetReregister() {
		t.Fatalf("heartbeat with the joined identity = %v, %v; want a request to register", hb, err)
	}
	checkJoinedIdentityBounds(t, e, h, tok)
	// Nothing secret in the logs of the scheduler and the agent.
	logs := e.logs.String()
	if strings.Contains(logs, secret) || strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, string(keyPEM[30:80])) {
		t.Fatalf("logs hold the token secret or a private key:\n%s", logs)
	}
	if !strings.Contains(logs, "node joined") {
		t.Fatalf("logs lack the join line:\n%s", logs)
	}
}

// checkJoinedIdentityBounds: the identity h that joined with tok cannot
// renew as another node, and tok, single use, is used up.
func checkJoinedIdentityBounds(t *testing.T, e *idEnv, h *pki.Holder, tok *persysv1.CreateJoinTokenResponse) {
	t.Helper()
	// A renewal cannot change the identity.
	otherKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.NewCSR("joined-2", otherKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS(""))).RenewCertificate(ctxT(t), &persysv1.RenewCertificateRequest{CsrPem: forged})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "common name") {
		t.Fatalf("renewal for another common name: %v, want PermissionDenied", err)
	}
	// Single use: a second join with the same token is refused.
	_, _, _, err = e.join("joined-2", tok.GetToken(), tok.GetCaHash())
	if err == nil || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("second use of a single-use token: %v, want used up", err)
	}
	list, err := e.admin.ListJoinTokens(ctxT(t), &persysv1.ListJoinTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 || list.GetTokens()[0].GetUses() != 1 {
		t.Fatalf("ListJoinTokens = %v, %v; want one token with one use", list, err)
	}
}

func TestJoinRefusals(t *testing.T) {
	e := newIDEnv(t, idOptions{})
	good := e.token(time.Hour, 0, nil)
	// The node id "taken" is held by a joined, valid certificate.
	if _, _, _, err := e.join("taken", good.GetToken(), good.GetCaHash()); err != nil {
		t.Fatal(err)
	}
	expired := e.token(time.Second, 0, nil)
	revoked := e.token(time.Hour, 0, nil)
	revokedID, _, _ := strings.Cut(revoked.GetToken(), ".")
	if _, err := e.admin.RevokeJoinToken(ctxT(t), &persysv1.RevokeJoinTokenRequest{Id: revokedID}); err != nil {
		t.Fatal(err)
	}
	goodID, _, _ := strings.Cut(good.GetToken(), ".")
	other, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherHash := pki.HashCA(mustRead(t, other.CA))
	// The expired token is past its time on the scheduler's clock.
	e.offset.Store(int64(time.Minute))

	tests := []struct {
		name, node, token, hash string
		want                    string
	}{
		{name: "expired token", node: "n1", token: expired.GetToken(), hash: good.GetCaHash(), want: "expired"},
		{name: "revoked token", node: "n1", token: revoked.GetToken(), hash: good.GetCaHash(), want: "revoked"},
		{name: "unknown token", node: "n1", token: "0123456789ab.0123456789abcdef0123456789abcdef", hash: good.GetCaHash(), want: "unknown"},
		{name: "wrong secret", node: "n1", token: goodID + ".00000000000000000000000000000000", hash: good.GetCaHash(), want: "unknown or its secret is wrong"},
		{name: "malformed token", node: "n1", token: "no-dot", hash: good.GetCaHash(), want: "<id>.<secret>"},
		{name: "wrong CA hash", node: "n1", token: good.GetToken(), hash: otherHash, want: "holds no CA with hash"},
		{name: "forged CSR for a held node id", node: "taken", token: good.GetToken(), hash: good.GetCaHash(), want: "held by a valid certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.identityKeys()
			_, _, dir, err := e.join(tt.node, tt.token, tt.hash)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("join error = %v, want one containing %q", err, tt.want)
			}
			if after := e.identityKeys(); !sameMap(before, after) {
				t.Fatalf("a refused join changed the identity keys:\nbefore %v\nafter  %v", before, after)
			}
			if agent.HasIdentity(dir) {
				t.Fatalf("a refused join left an identity in %s", dir)
			}
		})
	}

	// A bad CSR, sent raw over the pinned connection.
	pinned, err := pki.PinnedClientTLS(good.GetCaHash(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raw := persysv1grpc.NewControlServiceClient(e.dialTLS(pinned))
	for _, csr := range [][]byte{nil, []byte("junk"), bytes.Repeat([]byte("A"), pki.MaxCSRSize+1)} {
		_, err := raw.JoinNode(ctxT(t), &persysv1.JoinNodeRequest{Token: good.GetToken(), CsrPem: csr})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "csr_pem") {
			t.Errorf("JoinNode with csr %.10q: %v, want InvalidArgument naming csr_pem", csr, err)
		}
	}
	// Without a certificate, nothing but JoinNode is open.
	if _, err := raw.ListJoinTokens(ctxT(t), &persysv1.ListJoinTokensRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListJoinTokens without a certificate: %v, want Unauthenticated", err)
	}
	if _, err := raw.ListWorkloads(ctxT(t), &persysv1.ListWorkloadsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListWorkloads without a certificate: %v, want Unauthenticated", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJoinSingleUseConcurrent(t *testing.T) {
	e := newIDEnv(t, idOptions{})
	tok := e.token(time.Hour, 1, nil)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, _, _, err := e.join(fmt.Sprintf("race-%d", i), tok.GetToken(), tok.GetCaHash())
			errs <- err
		}()
	}
	ok := 0
	for range n {
		if err := <-errs; err == nil {
			ok++
		} else if !strings.Contains(err.Error(), "used up") {
			t.Errorf("unexpected refusal: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d joins succeeded with a single-use token, want 1", ok)
	}
}

// TestRotationUnderLoad renews the agent's and the scheduler's 30-second
// certificates (at a tenth of their lifetime) while calls go on over one
// long-lived connection and over new ones; none may fail.
func TestRotationUnderLoad(t *testing.T) {
	const life = 30 * time.Second
	e := newIDEnv(t, idOptions{certValidity: life, schedCert: life, renewFraction: 0.1})
	tok := e.token(time.Hour, 1, nil)
	files, _, _, err := e.join("rotating", tok.GetToken(), tok.GetCaHash())
	if err != nil {
		t.Fatal(err)
	}
	h, err := pki.LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	renewal, err := agent.NewSchedulerRenewal([]string{e.addr}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer renewal.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- (&pki.Renewer{Holder: h, Renew: renewal.Renew, Fraction: 0.1, Logger: e.logger}).Run(ctx)
	}()

	agentSerial0, schedSerial0 := h.Leaf().SerialNumber.Text(16), e.holder.Leaf().SerialNumber.Text(16)
	long := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS("")))
	var calls, failures int
	var firstErr error
	// The load: the agent's heartbeats and an admin's apply loop (a new
	// revision each time) against the scheduler whose certificate rotates
	// too.
	applies := 0
	call := func(c persysv1grpc.ControlServiceClient) {
		calls++
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_, err := c.Heartbeat(cctx, &persysv1.HeartbeatRequest{NodeId: "rotating"})
		if err == nil {
			applies++
			_, err = e.admin.ApplyWorkload(cctx, &persysv1.ApplyRequest{Name: "under-rotation", Spec: &persysv1.WorkloadSpec{
				Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
				Container:    &persysv1.ContainerSpec{Image: "sim/app:1", Env: map[string]string{"N": strconv.Itoa(applies)}},
			}})
		}
		if err != nil {
			failures++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	renewedTwice := func() bool {
		rec, _, err := e.store.GetNodeIdentity(ctxT(t), "rotating")
		return err == nil && h.Leaf().SerialNumber.Text(16) != agentSerial0 && rec.Serial == h.Leaf().SerialNumber.Text(16) &&
			e.holder.Leaf().SerialNumber.Text(16) != schedSerial0
	}
	deadline := time.After(waitLong)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	extra := 0
	for extra < 20 {
		select {
		case <-deadline:
			t.Fatalf("certificates not renewed within %s (agent serial %s, scheduler serial %s)", waitLong,
				h.Leaf().SerialNumber.Text(16), e.holder.Leaf().SerialNumber.Text(16))
		case <-tick.C:
		}
		call(long)
		fresh := e.dialTLS(h.ClientTLS(""))
		call(persysv1grpc.NewControlServiceClient(fresh))
		_ = fresh.Close()
		if renewedTwice() {
			extra++ // keep calling a while on the renewed certificates
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if failures != 0 {
		t.Fatalf("%d of %d calls failed during rotation; first: %v", failures, calls, firstErr)
	}
	t.Logf("%d calls (%d applies), agent serial %s → %s, scheduler serial %s → %s", calls, applies, agentSerial0, h.Leaf().SerialNumber.Text(16),
		schedSerial0, e.holder.Leaf().SerialNumber.Text(16))
}

// startSimAgent runs an agent with the sim runtime for node id with the
// identity in h, reporting to the env's scheduler.
func (e *idEnv) startSimAgent(id string, h *pki.Holder) {
	t := e.t
	t.Helper()
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := agent.DialScheduler([]string{e.addr}, h.ClientTLS(""),
		grpc.WithTransportCredentials(grpcauth.HolderCredentials(h, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		NodeID:            id,
		AdvertiseAddr:     "127.0.0.1",
		Labels:            map[string]string{"zone": "test"},
		Runtimes:          []runtime.Runtime{rt},
		Channel:           persysv1grpc.NewNodeChannelServiceClient(conn),
		HeartbeatInterval: heartbeat,
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           t.TempDir(),
		Logger:            e.logger.With("component", "agent", "node", id),
		Registry:          prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	var renewal *agent.SchedulerRenewal
	if e.renewAgents > 0 {
		renewal, err = agent.NewSchedulerRenewal([]string{e.addr}, h)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = (&pki.Renewer{Holder: h, Renew: renewal.Renew, Fraction: e.renewAgents, Logger: e.logger}).Run(ctx)
		}()
	}
	e.agentMu.Lock()
	e.agents[id] = func() {
		cancel()
		wg.Wait()
		_ = conn.Close()
		if renewal != nil {
			_ = renewal.Close()
		}
	}
	e.agentMu.Unlock()
}

func (e *idEnv) nodeState(id string) persysv1.NodeState {
	n, err := e.admin.GetNode(ctxT(e.t), &persysv1.GetNodeRequest{Id: id})
	if err != nil {
		return persysv1.NodeState_NODE_STATE_UNSPECIFIED
	}
	return n.GetState()
}

func TestRevokedNodeIsRefusedAndLosesItsWorkloads(t *testing.T) {
	e := newIDEnv(t, idOptions{nodes: []string{"static-b"}})
	tok := e.token(time.Hour, 1, nil)
	files, _, _, err := e.join("joined-a", tok.GetToken(), tok.GetCaHash())
	if err != nil {
		t.Fatal(err)
	}
	ha, err := pki.LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	e.startSimAgent("joined-a", ha)
	poll(t, "joined-a ready", waitLong, func() (bool, string) {
		s := e.nodeState("joined-a")
		return s == persysv1.NodeState_NODE_STATE_READY, s.String()
	})
	spec := &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 * mib},
		Container:    &persysv1.ContainerSpec{Image: "sim/app:1"},
	}
	if _, err := e.admin.ApplyWorkload(ctxT(t), &persysv1.ApplyRequest{Name: "w1", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	runningOn := func(node string) func() (bool, string) {
		return func() (bool, string) {
			v, err := e.admin.GetWorkload(ctxT(t), &persysv1.GetWorkloadRequest{Name: "w1"})
			if err != nil {
				return false, err.Error()
			}
			st := v.GetStatus()
			return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetNodeId() == node && v.GetAssignment().GetNodeId() == node,
				fmt.Sprintf("%s on %s (assigned %s)", st.GetState(), st.GetNodeId(), v.GetAssignment().GetNodeId())
		}
	}
	poll(t, "w1 running on joined-a", waitLong, runningOn("joined-a"))

	// A second node, with a statically issued certificate, to move to.
	hb, err := pki.LoadHolder(e.bundle.Agents["static-b"])
	if err != nil {
		t.Fatal(err)
	}
	e.startSimAgent("static-b", hb)
	poll(t, "static-b ready", waitLong, func() (bool, string) {
		s := e.nodeState("static-b")
		return s == persysv1.NodeState_NODE_STATE_READY, s.String()
	})

	rv, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{NodeId: "joined-a"})
	if err != nil {
		t.Fatal(err)
	}
	if rv.GetRevocation().GetRevokedBy() != "admin" || rv.GetRevocation().GetRevokedAt() == nil {
		t.Fatalf("revocation = %v", rv.GetRevocation())
	}
	poll(t, "joined-a NotReady", waitLong, func() (bool, string) {
		s := e.nodeState("joined-a")
		return s == persysv1.NodeState_NODE_STATE_NOT_READY, s.String()
	})
	poll(t, "w1 moved to static-b", waitLong, runningOn("static-b"))

	// Its next handshake is refused, and so are calls on a connection
	// opened before the revocation.
	fresh := persysv1grpc.NewControlServiceClient(e.dialTLS(ha.ClientTLS("")))
	if _, err := fresh.Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "joined-a"}); err == nil {
		t.Fatalf("a new connection with the revoked certificate was accepted")
	}
	_, err = fresh.RenewCertificate(ctxT(t), &persysv1.RenewCertificateRequest{})
	if err == nil {
		t.Fatalf("the revoked certificate could renew itself")
	}
	// A revoked node id is free for a new join (a later certificate).
	tok2 := e.token(time.Hour, 1, nil)
	if _, _, _, err := e.join("joined-a", tok2.GetToken(), tok2.GetCaHash()); err != nil {
		t.Fatalf("rejoin after revocation: %v", err)
	}
	list, err := e.admin.ListRevocations(ctxT(t), &persysv1.ListRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 1 || list.GetRevocations()[0].GetNodeId() != "joined-a" {
		t.Fatalf("ListRevocations = %v, %v", list, err)
	}
	var sawEvent bool
	evs, err := e.admin.ListEvents(ctxT(t), &persysv1.ListEventsRequest{})
	if err == nil {
		for _, ev := range evs.GetEvents() {
			sawEvent = sawEvent || (ev.GetType() == "NodeRevoked" && ev.GetReason() == persysv1.FailureReason_FAILURE_REASON_NODE_REVOKED)
		}
	}
	if !sawEvent {
		t.Errorf("no NodeRevoked event with reason NODE_REVOKED (%v)", err)
	}
}

func TestRevokeBySerialRefusesHandshake(t *testing.T) {
	e := newIDEnv(t, idOptions{nodes: []string{"static-c"}})
	h, err := pki.LoadHolder(e.bundle.Agents["static-c"])
	if err != nil {
		t.Fatal(err)
	}
	c := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS("")))
	if _, err := c.Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "static-c"}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	serial := h.Leaf().SerialNumber.Text(16)
	if _, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{Serial: serial}); err != nil {
		t.Fatal(err)
	}
	// The open connection's calls are refused with a clear reason...
	_, err = c.Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "static-c"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "NODE_REVOKED") {
		t.Fatalf("heartbeat on the old connection: %v, want PermissionDenied naming NODE_REVOKED", err)
	}
	// ...and a new handshake fails.
	if _, err := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS(""))).Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "static-c"}); err == nil || status.Code(err) == codes.PermissionDenied {
		t.Fatalf("new connection with a revoked certificate: %v, want a failed handshake", err)
	}
	for _, bad := range []*persysv1.RevokeCertificateRequest{{}, {Serial: "xyz"}, {Serial: "ab", NodeId: "n"}} {
		if _, err := e.admin.RevokeCertificate(ctxT(t), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RevokeCertificate(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

// TestCARotation rotates the CA under a running scheduler and agent: both
// renew onto the new CA, the bundle trusts both during the overlap, work
// still reaches the agent, and new joins pin the new CA.
func TestCARotation(t *testing.T) {
	e := newIDEnv(t, idOptions{certValidity: 30 * time.Second, schedCert: time.Hour, renewFraction: 0.9, staleRecheck: 50 * time.Millisecond})
	e.renewAgents = 0.1
	tok := e.token(time.Hour, 1, nil)
	files, _, _, err := e.join("rot-a", tok.GetToken(), tok.GetCaHash())
	if err != nil {
		t.Fatal(err)
	}
	h, err := pki.LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	e.startSimAgent("rot-a", h)
	poll(t, "rot-a ready", waitLong, func() (bool, string) {
		s := e.nodeState("rot-a")
		return s == persysv1.NodeState_NODE_STATE_READY, s.String()
	})
	next, err := pki.RotateCA(e.bundle.Dir, "Persys Compute CA 2", 24*time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signedByNext := func(c interface{ CheckSignatureFrom(*x509.Certificate) error }) bool {
		return c.CheckSignatureFrom(next.Cert) == nil
	}
	poll(t, "scheduler and agent certificates from the new CA", waitLong, func() (bool, string) {
		return signedByNext(e.holder.Leaf()) && signedByNext(h.Leaf()) && len(h.Roots()) >= 2,
			fmt.Sprintf("scheduler new=%v agent new=%v agent roots=%d\nlogs: %s", signedByNext(e.holder.Leaf()), signedByNext(h.Leaf()), len(h.Roots()), lastLines(e.logs.String(), 8))
	})
	// New connections both ways work on the new certificates.
	c := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS("")))
	if _, err := c.Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "rot-a"}); err != nil {
		t.Fatalf("heartbeat after rotation: %v", err)
	}
	spec := &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 * mib},
		Container:    &persysv1.ContainerSpec{Image: "sim/app:1"},
	}
	if _, err := e.admin.ApplyWorkload(ctxT(t), &persysv1.ApplyRequest{Name: "after-rotation", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	poll(t, "workload running on rot-a", waitLong, func() (bool, string) {
		v, err := e.admin.GetWorkload(ctxT(t), &persysv1.GetWorkloadRequest{Name: "after-rotation"})
		if err != nil {
			return false, err.Error()
		}
		return v.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING, v.GetStatus().String()
	})
	// The admin certificate of the old CA is still trusted (overlap), and
	// new tokens pin the new CA, which new joins verify.
	tok2 := e.token(time.Hour, 1, nil)
	if tok2.GetCaHash() != pki.HashCert(next.Cert) || tok2.GetCaHash() == tok.GetCaHash() {
		t.Fatalf("token ca hash %s, want the new CA's %s", tok2.GetCaHash(), pki.HashCert(next.Cert))
	}
	if _, _, _, err := e.join("rot-b", tok2.GetToken(), tok2.GetCaHash()); err != nil {
		t.Fatalf("join pinned to the new CA: %v", err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestIdentityWithoutCAKey(t *testing.T) {
	e := newIDEnv(t, idOptions{noCA: true, nodes: []string{"static-d"}})
	ca, err := pki.LoadCA(e.bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := pki.PinnedClientTLS(pki.HashCert(ca.Cert), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR("n1", key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = persysv1grpc.NewControlServiceClient(e.dialTLS(pinned)).JoinNode(ctxT(t), &persysv1.JoinNodeRequest{Token: "0123456789ab.00112233445566778899aabbccddeeff", CsrPem: csr})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--ca-dir") {
		t.Fatalf("JoinNode without a CA key: %v, want FailedPrecondition naming --ca-dir", err)
	}
	h, err := pki.LoadHolder(e.bundle.Agents["static-d"])
	if err != nil {
		t.Fatal(err)
	}
	own, err := pki.NewCSR("static-d", key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS(""))).RenewCertificate(ctxT(t), &persysv1.RenewCertificateRequest{CsrPem: own})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RenewCertificate without a CA key: %v", err)
	}
	if _, err := e.admin.CreateJoinToken(ctxT(t), &persysv1.CreateJoinTokenRequest{TtlSeconds: 60}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CreateJoinToken without a CA key: %v, want FailedPrecondition", err)
	}
	// Revocations need no CA key.
	if _, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{User: "mallory"}); err != nil {
		t.Fatalf("RevokeCertificate without a CA key: %v", err)
	}
	// Bad token requests are refused before anything else.
	for _, tc := range []struct {
		ttl  int64
		uses int32
	}{{0, 0}, {-1, 0}, {60, -1}, {400 * 24 * 3600, 0}} {
		if _, err := e.admin.CreateJoinToken(ctxT(t), &persysv1.CreateJoinTokenRequest{TtlSeconds: tc.ttl, MaxUses: tc.uses}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateJoinToken(ttl %d, uses %d) = %v, want InvalidArgument", tc.ttl, tc.uses, err)
		}
	}
}

func TestRevokedUserRefusedAtHandshake(t *testing.T) {
	e := newIDEnv(t, idOptions{})
	ca, err := pki.LoadCA(e.bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: "carol", Role: pki.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	h, err := pki.NewHolder(certPEM, keyPEM, mustRead(t, e.bundle.CA))
	if err != nil {
		t.Fatal(err)
	}
	list := func() error {
		_, err := persysv1grpc.NewControlServiceClient(e.dialTLS(h.ClientTLS(""))).ListRevocations(ctxT(t), &persysv1.ListRevocationsRequest{})
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if _, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{User: "carol"}); err != nil {
		t.Fatal(err)
	}
	if err := list(); err == nil {
		t.Fatal("a revoked user's certificate was accepted")
	}
	// Other users are not affected.
	if _, err := e.admin.ListRevocations(ctxT(t), &persysv1.ListRevocationsRequest{}); err != nil {
		t.Fatalf("admin after revoking carol: %v", err)
	}
}
