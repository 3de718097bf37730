package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const manifest = `
kind: Workload
metadata: {name: web, labels: {app: web}}
spec:
  type: container
  container: {image: example/web:1}
`

// Most tests of this package share one real scheduler on embedded etcd
// with a sim agent on n1 (which fails brokenImage) and a gateway in front,
// over mutual TLS; each uses workload names of its own. The node and
// leader tests start clusters of their own.
var (
	shared   *realsched.Cluster
	sharedGW *realsched.Gateway
	// calls records every call that reaches the shared scheduler.
	calls callrec.Recorder
)

const brokenImage = "example/broken:1"

func TestMain(m *testing.M) {
	os.Exit(realsched.Main(m, func(tb testing.TB) {
		shared = realsched.Start(tb, realsched.Options{NoSecrets: true, Nodes: []string{"n1"}, ServerOptions: calls.ServerOptions()})
		shared.StartAgent(tb, "n1", sim.Options{FailImages: map[string]persysv1.FailureReason{
			brokenImage: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}})
		sharedGW = shared.StartGateway(tb, nil)
	}))
}

// named is manifest with every "web" replaced by name (its label too).
func named(name string) string { return strings.ReplaceAll(manifest, "web", name) }

// TestClientAgainstScheduler applies, reads and deletes workloads through
// a gateway in front of a real scheduler.
func TestClientAgainstScheduler(t *testing.T) {
	shared.Forget(t, "cas")
	c := shared.Client(t, sharedGW)
	ctx := t.Context()
	manifest := named("cas")

	resp, err := c.Apply(ctx, []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResult() != "created" {
		t.Fatalf("result %q", resp.GetResult())
	}
	if resp, err = c.Apply(ctx, []byte(manifest)); err != nil || resp.GetResult() != "unchanged" {
		t.Fatalf("second apply: %v %v", resp, err)
	}

	v, err := c.GetWorkload(ctx, "cas", false)
	if err != nil || v.GetWorkload().GetName() != "cas" {
		t.Fatalf("get: %v %v", v, err)
	}
	list, err := c.ListWorkloadsSelector(ctx, map[string]string{"app": "cas"})
	if err != nil || len(list.GetWorkloads()) != 1 {
		t.Fatalf("list by selector: %v %v", list, err)
	}
	list, err = c.ListWorkloadsSelector(ctx, map[string]string{"app": "db"})
	if err != nil || len(list.GetWorkloads()) != 0 {
		t.Fatalf("list by other selector: %v %v", list, err)
	}

	_, err = c.GetWorkload(ctx, "nope", true)
	if !client.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}

	// Invalid manifest: fields come back in the APIError.
	_, err = c.Apply(ctx, []byte(strings.Replace(manifest, "type: container", "type: spaceship", 1)))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest || len(ae.Fields) == 0 || ae.Fields[0].Field != "spec.type" {
		t.Fatalf("invalid apply: %#v", err)
	}

	// Names that need escaping reach the gateway intact (which refuses
	// this one, naming it as sent).
	if _, err := c.GetWorkload(ctx, "a/b c", false); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest || !strings.Contains(err.Error(), `"a/b c"`) {
		t.Fatalf("escaped name: %v", err)
	}

	if err := c.DeleteWorkload(ctx, "cas"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "cas", "deleted", time.Minute); err != nil {
		t.Fatalf("wait deleted: %v", err)
	}
}

// TestClientWaitRetryAndNodes runs wr on the shared agent, whose sim
// runtime fails its image.
func TestClientWaitRetryAndNodes(t *testing.T) {
	shared.Forget(t, "wr", "nowhere")
	c := shared.Client(t, sharedGW)
	ctx := t.Context()
	if _, err := c.Apply(ctx, []byte(strings.Replace(named("wr"), "example/wr:1", brokenImage, 1))); err != nil {
		t.Fatal(err)
	}
	v, err := c.Wait(ctx, "wr", "running", time.Minute)
	if err != nil || v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED ||
		v.GetStatus().GetReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND {
		t.Fatalf("wait on failed: %v %v", v, err)
	}
	if v, err = c.RetryWorkload(ctx, "wr"); err != nil || v.GetWorkload().GetName() != "wr" {
		t.Fatalf("retry: %v %v", v, err)
	}

	// A wait that times out returns the last view and a 408 APIError: no
	// node matches this one's selector, so it stays PENDING.
	pending := strings.Replace(named("nowhere"), "  type: container\n", "  type: container\n  nodeSelector: {zone: none}\n", 1)
	if _, err := c.Apply(ctx, []byte(pending)); err != nil {
		t.Fatal(err)
	}
	var ae *client.APIError
	v, err = c.Wait(ctx, "nowhere", "running", 100*time.Millisecond)
	if !errors.As(err, &ae) || ae.Code != http.StatusRequestTimeout || !strings.Contains(ae.Message, "PENDING") {
		t.Fatalf("wait timeout: %v", err)
	}
	if v.GetWorkload().GetName() != "nowhere" {
		t.Errorf("timeout without the last view: %v", v)
	}

	if nodes, err := c.ListNodes(ctx); err != nil || len(nodes.GetNodes()) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	if n, err := c.GetNode(ctx, "n1"); err != nil || n.GetId() != "n1" {
		t.Fatalf("node: %v %v", n, err)
	}
	if s, err := c.Summary(ctx); err != nil || s.GetNodesTotal() != 1 {
		t.Fatalf("summary: %v %v", s, err)
	}
	if ev, err := c.ListEvents(ctx, "wr", 5); err != nil || len(ev.GetEvents()) == 0 {
		t.Fatalf("events: %v %v", ev, err)
	}
	if err := c.DeleteWorkload(ctx, "wr"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "wr", "deleted", time.Minute); err != nil {
		t.Fatalf("wait deleted: %v", err)
	}
}

func TestClientRefusesWrongCA(t *testing.T) {
	other, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Trusting another cluster's CA: the gateway's certificate fails.
	cfg := *shared.Config(sharedGW)
	cfg.CA = other.CA
	c, err := client.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.ListNodes(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no endpoint", client.Config{CA: "a", Cert: "b", Key: "c"}, "endpoint"},
		{"http", client.Config{Endpoint: "http://x:1", CA: "a", Cert: "b", Key: "c"}, "https"},
		{"no cert", client.Config{Endpoint: "https://x:1", CA: "a", Key: "c"}, "cert"},
		{"missing files", client.Config{Endpoint: "https://x:1", CA: "/nonexistent/ca", Cert: "/nonexistent/c", Key: "/nonexistent/k"}, "/nonexistent/ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.New(&tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestClientNodes cordons and drains nodes of a real scheduler with two
// real agents on the sim runtime (the drain timeout's path to the
// scheduler is checked in the gateway's tests).
func TestClientNodes(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{NoSecrets: true, Nodes: []string{"n1", "n2"}})
	rc.StartAgent(t, "n1", sim.Options{})
	rc.StartAgent(t, "n2", sim.Options{})
	c := rc.Client(t, rc.StartGateway(t, nil))
	ctx := t.Context()

	if _, err := c.Apply(ctx, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	v, err := c.Wait(ctx, "web", "running", time.Minute)
	if err != nil || v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("wait running: %v %v", v, err)
	}
	on, other := v.GetStatus().GetNodeId(), "n1"
	if on == "n1" {
		other = "n2"
	}
	n, err := c.CordonNode(ctx, other)
	if err != nil || !n.GetCordoned() {
		t.Fatalf("cordon: %v %v", n, err)
	}
	// The other node is cordoned: the drain cannot move web.
	resp, err := c.DrainNode(ctx, on, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetComplete() || len(resp.GetWorkloads()) != 1 || resp.GetWorkloads()[0].GetResult() != "unmoved" {
		t.Fatalf("drain with nowhere to go: %v", resp)
	}
	if n, err = c.UncordonNode(ctx, other); err != nil || n.GetCordoned() {
		t.Fatalf("uncordon: %v %v", n, err)
	}
	// The drain completes; web may have moved already once the other node
	// could take it (the drained node stays cordoned).
	if resp, err = c.DrainNode(ctx, on, 0); err != nil || !resp.GetComplete() {
		t.Fatalf("drain: %v %v", resp, err)
	}
	for _, w := range resp.GetWorkloads() {
		if w.GetToNode() != other {
			t.Fatalf("drain moved %v, want to %s", w, other)
		}
	}
	if v, err = c.Wait(ctx, "web", "running", time.Minute); err != nil || v.GetStatus().GetNodeId() != other {
		t.Fatalf("web after the drain: %v %v", v, err)
	}
	if _, err := c.DrainNode(ctx, on, -time.Second); err == nil {
		t.Error("negative drain timeout accepted")
	}
	if _, err := c.CordonNode(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("cordon of a missing node: %v", err)
	}
}

// TestClientFollowsLeader reaches two real, elected schedulers through a
// gateway whose first scheduler is the follower.
func TestClientFollowsLeader(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Replicas: 2, NoSecrets: true})
	li := rc.Leader(t)
	leader, follower := rc.Addrs[li], rc.Addrs[1-li]
	gw := rc.StartGateway(t, nil, follower, leader)
	c := rc.Client(t, gw)
	ctx := t.Context()
	db := strings.ReplaceAll(manifest, "web", "db")

	// A stream is a write: the follower redirects it to the leader.
	resp, err := c.ApplyAll(ctx, []byte(manifest+"---\n"+db))
	if err != nil {
		t.Fatal(err)
	}
	if rs := resp.GetResults(); len(rs) != 2 || rs[0].GetResult() != "created" || rs[1].GetResult() != "created" {
		t.Fatalf("results %v", rs)
	}
	if gw.Pool.Current() != leader {
		t.Fatalf("the gateway calls %s, want the leader %s", gw.Pool.Current(), leader)
	}
	if _, err := c.GetWorkload(ctx, "db", false); err != nil {
		t.Fatalf("db after ApplyAll: %v", err)
	}
	info, err := c.Leader(ctx)
	if err != nil || info.GetAddress() != leader || !info.GetIsLeader() {
		t.Fatalf("leader: %v %v", info, err)
	}
}

// TestClientApplyAll applies a stream through a gateway in front of a
// real scheduler: one call for the stream, an item the scheduler cannot
// apply in its own result, an invalid stream as an APIError.
func TestClientApplyAll(t *testing.T) {
	shared.Forget(t, "aa-web", "aa-db")
	c := shared.Client(t, sharedGW)
	ctx := t.Context()
	web, db := named("aa-web"), named("aa-db")
	stream := []byte(web + "---\n" + db)
	// batches counts the ApplyWorkloads calls of this test's streams.
	batches := func() int {
		n := 0
		for _, c := range calls.Calls("ApplyWorkloads") {
			if items := c.Request.(*persysv1.ApplyWorkloadsRequest).GetItems(); len(items) > 0 && items[0].GetName() == "aa-web" {
				n++
			}
		}
		return n
	}
	before := batches()

	resp, err := c.ApplyAll(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if rs := resp.GetResults(); len(rs) != 2 || rs[0].GetName() != "aa-web" || rs[0].GetResult() != "created" ||
		rs[1].GetName() != "aa-db" || rs[1].GetResult() != "created" {
		t.Fatalf("results %v", rs)
	}
	if n := batches() - before; n != 1 {
		t.Errorf("the scheduler got %d ApplyWorkloads calls, want 1", n)
	}
	if _, err := c.GetWorkload(ctx, "aa-db", false); err != nil {
		t.Fatalf("aa-db after ApplyAll: %v", err)
	}

	// One item failing is in its result, not an error: aa-db now comes
	// from a Git repository that no server answers.
	dbGit := "kind: Workload\nmetadata: {name: aa-db}\nspec:\n  type: compose\n  compose:\n    git: {url: 'http://127.0.0.1:1/none.git', ref: main}\n"
	resp, err = c.ApplyAll(ctx, []byte(web+"---\n"+dbGit))
	if err != nil {
		t.Fatal(err)
	}
	if rs := resp.GetResults(); len(rs) != 2 || rs[0].GetResult() != "unchanged" || rs[1].GetResult() != "" ||
		codes.Code(rs[1].GetErrorCode()) != codes.FailedPrecondition || !strings.HasPrefix(rs[1].GetErrorMessage(), "spec.compose.git") {
		t.Fatalf("results %v", rs)
	}

	// An invalid stream comes back as an APIError naming the document.
	_, err = c.ApplyAll(ctx, []byte(web+"---\n"+strings.Replace(db, "type: container", "type: spaceship", 1)))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest || len(ae.Fields) != 1 || ae.Fields[0].Field != "documents[1].spec.type" {
		t.Fatalf("invalid stream: %#v", err)
	}
	if _, err := c.ApplyAll(ctx, nil); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
		t.Fatalf("empty stream: %v", err)
	}
	if n := batches() - before; n != 2 {
		t.Errorf("the scheduler got %d ApplyWorkloads calls, want 2: invalid streams must not reach it", n)
	}
}
