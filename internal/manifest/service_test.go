package manifest

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

const baseService = `apiVersion: persys/v1
kind: Service
metadata:
  name: web
  labels: {team: a}
spec:
  replicas: 4
  selector: {app: web}
  spread: {maxPerNode: 2, nodeLabel: zone}
  update:
    maxUnavailable: 1
    maxSurge: 1
    minReadySeconds: 5
    progressDeadline: 2m
    autoRollback: true
    canary: 1
  template:
    type: container
    container:
      image: nginx:1.27
      ports:
        - containerPort: 80
    resources: {cpu: 100m, memory: 64Mi}
`

func editService(old, repl string) string {
	if !strings.Contains(baseService, old) {
		panic("baseService lacks " + old)
	}
	return strings.Replace(baseService, old, repl, 1)
}

func TestParseServiceValid(t *testing.T) {
	m, err := ParseService([]byte(baseService))
	if err != nil {
		t.Fatal(err)
	}
	req := m.ToApplyServiceRequest()
	want := &persysv1.ServiceUpdatePolicy{MaxUnavailable: 1, MaxSurge: 1, MinReadySeconds: 5,
		ProgressDeadlineSeconds: 120, AutoRollback: true, Canary: 1, DrainDelayMs: 2000}
	if !proto.Equal(req.GetSpec().GetUpdate(), want) {
		t.Fatalf("update = %v, want %v", req.GetSpec().GetUpdate(), want)
	}
	if req.GetSpec().GetReplicas() != 4 || req.GetSpec().GetTemplate().GetContainer().GetImage() != "nginx:1.27" ||
		req.GetSpec().GetTemplate().GetResources().GetCpuMillis() != 100 || req.GetSpec().GetSpread().GetNodeLabel() != "zone" {
		t.Fatalf("request = %v", req)
	}
	checkServiceRoundTrip(t, m)
}

func TestParseServiceDefaults(t *testing.T) {
	m, err := ParseService([]byte("kind: Service\nmetadata: {name: s}\nspec:\n  template: {type: container, container: {image: x}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := m.ToApplyServiceRequest()
	u := req.GetSpec().GetUpdate()
	if req.GetSpec().GetReplicas() != 1 || u.GetMaxSurge() != 1 || u.GetMaxUnavailable() != 0 || u.GetProgressDeadlineSeconds() != 600 {
		t.Fatalf("defaults = %v", req.GetSpec())
	}
	if req.GetSpec().GetTemplate().GetDesiredState() != persysv1.DesiredState_DESIRED_STATE_RUNNING {
		t.Fatalf("template defaults not filled in: %v", req.GetSpec().GetTemplate())
	}
	checkServiceRoundTrip(t, m)
}

func TestParseServiceInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, input, field, reason string
	}{
		{"wrong kind", editService("kind: Service", "kind: Workload"), "kind", `must be "Service"`},
		{"negative replicas", editService("replicas: 4", "replicas: -1"), "spec.replicas", "between 0 and 1000"},
		{"too many replicas", editService("replicas: 4", "replicas: 1001"), "spec.replicas", "between 0 and 1000"},
		{"both budgets zero", editService("maxUnavailable: 1\n    maxSurge: 1", "maxUnavailable: 0\n    maxSurge: 0"), "spec.update.maxSurge", "both 0"},
		{"negative surge", editService("maxSurge: 1", "maxSurge: -2"), "spec.update.maxSurge", "between 0"},
		{"unknown template type", editService("type: container", "type: lambda"), "spec.template.type", "must be one of container, compose, vm"},
		{"template missing", strings.Split(baseService, "  template:")[0], "spec.template", "required"},
		{"template field bad", editService("image: nginx:1.27", "image: \"\""), "spec.template.container.image", "required"},
		{"probe port not exposed", editService("    resources: {cpu: 100m, memory: 64Mi}", "    resources: {cpu: 100m, memory: 64Mi}\n    readinessProbe:\n      httpGet: {port: 8080}"),
			"spec.template.readinessProbe.httpGet.port", "not a tcp port of spec.template.container.ports"},
		{"bad deadline", editService("progressDeadline: 2m", "progressDeadline: soon"), "spec.update.progressDeadline", "duration"},
		{"short deadline", editService("progressDeadline: 2m", "progressDeadline: 10ms"), "spec.update.progressDeadline", "between 1s"},
		{"bad drain delay", editService("progressDeadline: 2m", "progressDeadline: 2m\n    drainDelay: later"), "spec.update.drainDelay", "duration"},
		{"negative drain delay", editService("progressDeadline: 2m", "progressDeadline: 2m\n    drainDelay: -1s"), "spec.update.drainDelay", "between 0s"},
		{"long drain delay", editService("progressDeadline: 2m", "progressDeadline: 2m\n    drainDelay: 1h"), "spec.update.drainDelay", "between 0s"},
		{"negative min ready", editService("minReadySeconds: 5", "minReadySeconds: -5"), "spec.update.minReadySeconds", "between 0"},
		{"canary above replicas", editService("canary: 1", "canary: 5"), "spec.update.canary", "spec.replicas (4)"},
		{"negative max per node", editService("maxPerNode: 2", "maxPerNode: -1"), "spec.spread.maxPerNode", "between 0"},
		{"bad spread label", editService("nodeLabel: zone", "nodeLabel: \"a b\""), "spec.spread.nodeLabel", "label key"},
		{"reserved selector", editService("selector: {app: web}", "selector: {persys.service: x}"), `spec.selector["persys.service"]`, "reserved"},
		{"long name", editService("name: web", "name: "+strings.Repeat("a", 49)), "metadata.name", "at most 48"},
		{"unknown field", editService("  replicas: 4", "  replica: 4"), "spec.replica", "unknown field"},
		{"replicas as string", editService("replicas: 4", "replicas: \"4\""), "spec.replicas", "integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseService([]byte(tc.input))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseService = %v, want an *Error", err)
			}
			for _, f := range e.Fields {
				if f.Field == tc.field && strings.Contains(f.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("errors %v lack %s: ...%s...", e.Fields, tc.field, tc.reason)
		})
	}
}

func TestValidateApplyServiceRequest(t *testing.T) {
	m, err := ParseService([]byte(baseService))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*persysv1.ApplyServiceRequest)
		field string
	}{
		{"negative replicas", func(r *persysv1.ApplyServiceRequest) { r.Spec.Replicas = -3 }, "spec.replicas"},
		{"both zero", func(r *persysv1.ApplyServiceRequest) { r.Spec.Update.MaxSurge, r.Spec.Update.MaxUnavailable = 0, 0 }, "spec.update.maxSurge"},
		{"no update", func(r *persysv1.ApplyServiceRequest) { r.Spec.Update = nil }, "spec.update"},
		{"no template", func(r *persysv1.ApplyServiceRequest) { r.Spec.Template = nil }, "spec.template"},
		{"unknown type", func(r *persysv1.ApplyServiceRequest) { r.Spec.Template.Type = 42 }, "spec.template.type"},
		{"bad name", func(r *persysv1.ApplyServiceRequest) { r.Name = "Web" }, "metadata.name"},
		{"no spec", func(r *persysv1.ApplyServiceRequest) { r.Spec = nil }, "spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := m.ToApplyServiceRequest()
			tc.edit(req)
			err := ValidateApplyServiceRequest(req)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("= %v, want an *Error", err)
			}
			for _, f := range e.Fields {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("errors %v do not name %s", e.Fields, tc.field)
		})
	}
}

func TestKindOf(t *testing.T) {
	for in, want := range map[string]string{baseService: "Service", base: "Workload", "kind: [": "", "a: 1": "", "kind: 3": ""} {
		if got := KindOf([]byte(in)); got != want {
			t.Errorf("KindOf(%.20q) = %q, want %q", in, got, want)
		}
	}
}

// checkServiceRoundTrip: what ParseService accepts converts to a request
// the gRPC rules accept, and back to a manifest that gives the same request.
func checkServiceRoundTrip(t *testing.T, m *ServiceManifest) {
	t.Helper()
	req := m.ToApplyServiceRequest()
	if err := ValidateApplyServiceRequest(req); err != nil {
		t.Fatalf("ValidateApplyServiceRequest of a valid manifest's request: %v", err)
	}
	back := FromService(req.GetName(), req.GetLabels(), req.GetSpec())
	if req2 := back.ToApplyServiceRequest(); !proto.Equal(req, req2) {
		t.Fatalf("round trip changed the request\nbefore: %v\nafter:  %v", req, req2)
	}
	text, err := yaml.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if len(text) > MaxSize {
		return
	}
	again, err := ParseService(text)
	if err != nil {
		t.Fatalf("FromService output does not parse: %v\n%s", err, text)
	}
	if req3 := again.ToApplyServiceRequest(); !proto.Equal(req, req3) {
		t.Fatalf("reparse changed the request\nbefore: %v\nafter:  %v", req, req3)
	}
}

// FuzzParseService checks that ParseService never panics, fails only with
// *Error, and that what it accepts survives the round trip.
func FuzzParseService(f *testing.F) {
	f.Add([]byte(baseService))
	f.Add([]byte(editService("replicas: 4", "replicas: 0")))
	f.Add([]byte(editService("maxUnavailable: 1\n    maxSurge: 1", "maxUnavailable: 0\n    maxSurge: 0")))
	f.Add([]byte(editService("type: container", "type: vm")))
	f.Add([]byte("kind: Service\nmetadata: {name: s}\nspec: {template: {type: container, container: {image: x}}}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseService(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Fields) == 0 {
				t.Fatalf("ParseService error %T %v is not an *Error with fields", err, err)
			}
			return
		}
		checkServiceRoundTrip(t, m)
	})
}
