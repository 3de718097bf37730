package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// probe adds a probe (YAML under spec, indented by two) to base.
func probe(yamlText string) string { return probeOn(base, yamlText) }

func probeOn(doc, yamlText string) string {
	return strings.Replace(doc, "spec:\n", "spec:\n  "+yamlText+"\n", 1)
}

// vmProbe adds a probe to a VM whose only port forward has guest port 22.
func vmProbe(yamlText string) string {
	return "kind: Workload\nmetadata: {name: v}\nspec:\n  type: vm\n  vm:\n    vcpus: 1\n    memory: 256Mi\n" +
		"    disks: [{name: root, pool: default, baseImage: b.qcow2}]\n" +
		"    networks: [{portForwards: [{hostPort: 2222, guestPort: 22}]}]\n  " + yamlText + "\n"
}

// base is a valid manifest that the bad cases edit.
const base = `apiVersion: persys/v1
kind: Workload
metadata:
  name: hello
  labels:
    app: hello
spec:
  type: container
  container:
    image: persys-hello:latest
    env:
      GREETING: hi
    ports:
      - containerPort: 8080
        hostPort: 18080
        protocol: tcp
        hostIP: 127.0.0.1
      - containerPort: 9090
    volumes:
      - type: bind
        source: /srv/data
        target: /data
    labels:
      team: a
  resources:
    cpu: 250m
    memory: 64Mi
`

// edit replaces old, which must occur exactly once in base, with new.
func edit(old, new string) string {
	if n := strings.Count(base, old); n != 1 {
		panic(fmt.Sprintf("edit: %q occurs %d times in base", old, n))
	}
	return strings.Replace(base, old, new, 1)
}

func repeatLines(format string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

func TestBaseIsValid(t *testing.T) {
	if _, err := Parse([]byte(base)); err != nil {
		t.Fatalf("base manifest: %v", err)
	}
}

// badCase is a manifest Parse must refuse, with the field paths it must name.
type badCase struct {
	name   string
	input  string
	fields []string // every field path reported, in order; nil checks only the reason
	reason string   // substring of the first reason
}

// badCases is shared by TestParseInvalid and FuzzParse's seed corpus.
func badCases() []badCase {
	long := strings.Repeat("a", 64)
	return []badCase{
		// Document level.
		{"empty input", "", []string{""}, "manifest is empty"},
		{"only comments", "# nothing here\n\n", []string{""}, "manifest is empty"},
		{"oversized body", base + "#" + strings.Repeat("x", MaxSize) + "\n", []string{""}, "larger than the limit of 1048576 bytes"},
		{"top-level list", "- a\n- b\n", []string{""}, "must be a YAML mapping or a JSON object"},
		{"top-level scalar", "hello\n", []string{""}, "must be a YAML mapping or a JSON object"},
		{"broken yaml", edit("kind: Workload", "kind: [Workload"), []string{""}, "invalid YAML"},
		{"two documents", base + "---\n" + base, []string{""}, "2 YAML documents"},
		{"infinite number", edit("memory: 64Mi", "memory: .inf"), []string{""}, "invalid YAML"},

		// Duplicate keys.
		{"duplicate top-level key", edit("kind: Workload", "kind: Workload\nkind: Workload"), []string{"kind"}, "duplicate key (line 3)"},
		{"duplicate nested key", edit("GREETING: hi", "GREETING: hi\n      GREETING: ho"), []string{"spec.container.env.GREETING"}, "duplicate key"},
		{"duplicate key in list item", edit("protocol: tcp", "protocol: tcp\n        protocol: udp"), []string{"spec.container.ports[0].protocol"}, "duplicate key"},
		{"duplicate key in json", `{"kind": "Workload", "metadata": {"name": "a", "name": "b"}}`, []string{"metadata.name"}, "duplicate key (line 1)"},

		// Unknown fields and wrong types.
		{"unknown top-level field", "extra: 1\n" + base, []string{"extra"}, "unknown field"},
		{"unknown field in spec", edit("spec:\n", "spec:\n  replicas: 3\n"), []string{"spec.replicas"}, "unknown field"},
		{"unknown nested field", edit("hostIP: 127.0.0.1", "hostIP: 127.0.0.1\n        hostport: 1"), []string{"spec.container.ports[0].hostport"}, `did you mean "hostPort"`},
		{"field in wrong case", edit("apiVersion: persys/v1", "apiversion: persys/v1"), []string{"apiversion"}, `did you mean "apiVersion"`},
		{"unknown field in volume", edit("target: /data", "target: /data\n        mode: rw"), []string{"spec.container.volumes[0].mode"}, "unknown field"},
		{"unknown field with odd name", edit("spec:\n", "spec:\n  \"a b\": 1\n"), []string{`spec["a b"]`}, "unknown field"},
		{"unknown field in json", `{"kind":"Workload","metadata":{"name":"a"},"spec":{"type":"container","container":{"image":"x","ports":[{"containerPort":1},{"containerPort":2,"bogus":true}]}}}`, []string{"spec.container.ports[1].bogus"}, "unknown field"},
		{"spec is a string", "kind: Workload\nmetadata: {name: a}\nspec: container\n", []string{"spec"}, "must be a mapping, got a string"},
		{"port as string", edit("containerPort: 9090", `containerPort: "9090"`), []string{"spec.container.ports[1].containerPort"}, "must be an integer, got a string"},
		{"port as fraction", edit("containerPort: 9090", "containerPort: 90.5"), []string{"spec.container.ports[1].containerPort"}, "must be an integer"},
		{"port beyond int64", edit("containerPort: 9090", "containerPort: 99999999999999999999"), []string{"spec.container.ports[1].containerPort"}, "out of range"},
		{"ports not a list", edit("ports:\n", "ports: 8080\n    x:\n"), []string{"spec.container.ports", "spec.container.x"}, "must be a list"},
		{"privileged not a bool", edit("image: persys-hello:latest", "image: persys-hello:latest\n    privileged: maybe"), []string{"spec.container.privileged"}, "must be true or false"},
		{"unquoted no", edit("image: persys-hello:latest", "image: persys-hello:latest\n    restartPolicy: no"), []string{"spec.container.restartPolicy"}, `quote words such as "no"`},
		{"label value a number", edit("app: hello", "app: 1"), []string{"metadata.labels.app"}, "must be a string, got a number"},
		{"quantity as list", edit("cpu: 250m", "cpu: [1]"), []string{"spec.resources.cpu"}, "must be a quantity"},
		{"command not a list of strings", edit("image: persys-hello:latest", "image: persys-hello:latest\n    command: [/hello, {a: b}]"), []string{"spec.container.command[1]"}, "must be a string, got a mapping"},

		// Header.
		{"wrong kind", edit("kind: Workload", "kind: Deployment"), []string{"kind"}, `must be "Workload"`},
		{"missing kind", edit("kind: Workload\n", ""), []string{"kind"}, "required"},
		{"wrong apiVersion", edit("apiVersion: persys/v1", "apiVersion: persys/v2"), []string{"apiVersion"}, `must be "persys/v1"`},

		// Metadata.
		{"bad name", edit("name: hello", "name: Hello_World"), []string{"metadata.name"}, "DNS-1123 label"},
		{"name ends with dash", edit("name: hello", "name: hello-"), []string{"metadata.name"}, "DNS-1123 label"},
		{"name too long", edit("name: hello", "name: "+long), []string{"metadata.name"}, "DNS-1123 label"},
		{"missing name", edit("  name: hello\n", ""), []string{"metadata.name"}, "required"},
		{"label key with space", edit("app: hello", `"app name": hello`), []string{`metadata.labels["app name"]`}, "key may hold only"},
		{"label value too long", edit("app: hello", "app: "+long), []string{"metadata.labels.app"}, "at most 63 characters"},
		{"label key too long", edit("app: hello", strings.Repeat("k", 254)+": v"), []string{"metadata.labels." + strings.Repeat("k", 254)}, "at most 253"},
		{"too many labels", edit("    app: hello\n", repeatLines("    l%d: v\n", 65)), []string{"metadata.labels"}, "at most 64 entries, got 65"},

		// Spec.
		{"compose type without compose", edit("type: container", "type: compose"), []string{"spec.compose", "spec.container"}, "required when spec.type is compose"},
		{"vm type without vm", edit("type: container", "type: vm"), []string{"spec.vm", "spec.container"}, "required when spec.type is vm"},
		{"unknown type", edit("type: container", "type: pod"), []string{"spec.type"}, "must be one of container, compose, vm"},
		{"missing type", edit("  type: container\n", ""), []string{"spec.type"}, "required"},
		{"missing container", "kind: Workload\nmetadata: {name: a}\nspec: {type: container}\n", []string{"spec.container"}, "required when spec.type is container"},
		{"bad desired state", edit("type: container", "type: container\n  desiredState: paused"), []string{"spec.desiredState"}, "running or stopped"},
		{"bad node loss policy", edit("type: container", "type: container\n  nodeLossPolicy: never"), []string{"spec.nodeLossPolicy"}, `must be reschedule or wait, got "never"`},
		{"node loss policy in upper case", edit("type: container", "type: container\n  nodeLossPolicy: WAIT"), []string{"spec.nodeLossPolicy"}, "must be reschedule or wait"},
		{"node loss policy not a string", edit("type: container", "type: container\n  nodeLossPolicy: [wait]"), []string{"spec.nodeLossPolicy"}, "must be a string, got a list"},
		{"bad node selector key", edit("  resources:", "  nodeSelector: {\"a:b\": x}\n  resources:"), []string{`spec.nodeSelector["a:b"]`}, "key may hold only"},

		// Resources.
		{"negative memory", edit("memory: 64Mi", "memory: -64Mi"), []string{"spec.resources.memory"}, "must not be negative"},
		{"cpu below the kernel minimum", edit("cpu: 250m", "cpu: 5m"), []string{"spec.resources.cpu"}, "at least 10m"},
		{"negative cpu number", edit("cpu: 250m", "cpu: -1"), []string{"spec.resources.cpu"}, "must not be negative"},
		{"negative disk", edit("memory: 64Mi", "memory: 64Mi\n    disk: -1Gi"), []string{"spec.resources.disk"}, "must not be negative"},
		{"bad quantity suffix", edit("memory: 64Mi", "memory: 64MB"), []string{"spec.resources.memory"}, "not a quantity"},
		{"quantity with spaces", edit("memory: 64Mi", "memory: 64 Mi"), []string{"spec.resources.memory"}, "not a quantity"},
		{"fraction of a byte", edit("memory: 64Mi", "memory: 0.5"), []string{"spec.resources.memory"}, "whole number of bytes"},
		{"cpu finer than a millicore", edit("cpu: 250m", "cpu: 0.0001"), []string{"spec.resources.cpu"}, "whole number of millicores"},
		{"memory too large", edit("memory: 64Mi", "memory: 16Ei"), []string{"spec.resources.memory"}, "too large"},
		{"huge exponent", edit("memory: 64Mi", "memory: 1e999999999"), []string{"spec.resources.memory"}, "not a quantity"},

		// Container.
		{"missing image", edit("    image: persys-hello:latest\n", ""), []string{"spec.container.image"}, "required"},
		{"empty image", edit("image: persys-hello:latest", `image: ""`), []string{"spec.container.image"}, "required"},
		{"image with uppercase repository", edit("image: persys-hello:latest", "image: Persys-Hello"), []string{"spec.container.image"}, "not a valid image reference"},
		{"image too long", edit("image: persys-hello:latest", "image: "+strings.Repeat("a", 513)), []string{"spec.container.image"}, "at most 512"},
		{"bad env name", edit("GREETING: hi", "1GREETING: hi"), []string{`spec.container.env["1GREETING"]`}, "name must match"},
		{"NUL in env value", edit("GREETING: hi", `GREETING: "a\0b"`), []string{"spec.container.env.GREETING"}, "NUL"},
		{"too many env vars", edit("      GREETING: hi\n", repeatLines("      V%d: x\n", 257)), []string{"spec.container.env"}, "at most 256 variables, got 257"},
		{"bad restart policy", edit("image: persys-hello:latest", "image: persys-hello:latest\n    restartPolicy: sometimes"), []string{"spec.container.restartPolicy"}, "must be one of no, always"},
		{"persys label", edit("team: a", `persys.managed: "true"`), []string{`spec.container.labels["persys.managed"]`}, `"persys." prefix is reserved`},

		// Ports.
		{"container port too high", edit("containerPort: 9090", "containerPort: 70000"), []string{"spec.container.ports[1].containerPort"}, "between 1 and 65535"},
		{"container port zero", edit("containerPort: 9090", "containerPort: 0"), []string{"spec.container.ports[1].containerPort"}, "between 1 and 65535"},
		{"negative host port", edit("hostPort: 18080", "hostPort: -1"), []string{"spec.container.ports[0].hostPort"}, "between 0 and 65535"},
		{"bad protocol", edit("protocol: tcp", "protocol: sctp"), []string{"spec.container.ports[0].protocol"}, "tcp or udp"},
		{"upper-case protocol", edit("protocol: tcp", "protocol: TCP"), []string{"spec.container.ports[0].protocol"}, "tcp or udp"},
		{"bad host ip", edit("hostIP: 127.0.0.1", "hostIP: localhost"), []string{"spec.container.ports[0].hostIP"}, "IPv4 or IPv6"},
		{"host ip with zone", edit("hostIP: 127.0.0.1", `hostIP: "fe80::1%eth0"`), []string{"spec.container.ports[0].hostIP"}, "without zone"},
		{"duplicate host binding", edit("      - containerPort: 9090", "      - containerPort: 9090\n        hostPort: 18080\n        hostIP: 127.0.0.1"), []string{"spec.container.ports[1].hostPort"}, "already published by spec.container.ports[0]"},
		{"dynamic with a host port", edit("      - containerPort: 9090", "      - containerPort: 9090\n        hostPort: 18081\n        dynamic: true"), []string{"spec.container.ports[1].dynamic"}, "leave hostPort unset (got 18081)"},
		{"too many ports", edit("      - containerPort: 9090\n", repeatLines("      - containerPort: 1%d\n", 64)), []string{"spec.container.ports"}, "at most 64 ports, got 65"},

		// Volumes.
		{"relative volume target", edit("target: /data", "target: data"), []string{"spec.container.volumes[0].target"}, "absolute path"},
		{"missing volume target", edit("        target: /data\n", ""), []string{"spec.container.volumes[0].target"}, "required"},
		{"root volume target", edit("target: /data", "target: /"), []string{"spec.container.volumes[0].target"}, "must not be /"},
		{"relative bind source", edit("source: /srv/data", "source: srv/data"), []string{"spec.container.volumes[0].source"}, "absolute path"},
		{"bad volume type", edit("type: bind", "type: tmpfs"), []string{"spec.container.volumes[0].type"}, "bind or volume"},
		{"missing volume type", edit("      - type: bind\n        source", "      - source"), []string{"spec.container.volumes[0].type"}, "required"},
		{"named volume with a path", edit("type: bind", "type: volume"), []string{"spec.container.volumes[0].source"}, "must be a volume name"},
		{"duplicate volume target", edit("        target: /data\n", "        target: /data\n      - {type: volume, source: cache, target: /data/}\n"), []string{"spec.container.volumes[1].target"}, "already mounted by spec.container.volumes[0]"},
		{"too many volumes", edit("    labels:\n      team", repeatLines("      - {type: volume, source: v%d-x, target: /v}\n", 64)+"    labels:\n      team"), nil, "at most 64 volumes, got 65"},

		// Probes.
		{"probe without action", probe("readinessProbe:\n    periodSeconds: 5"), []string{"spec.readinessProbe"}, "needs one of httpGet, tcpSocket, exec"},
		{"probe with two actions", probe("readinessProbe:\n    tcpSocket: {port: 8080}\n    exec: {command: [/hello]}"), []string{"spec.readinessProbe"}, "give one of httpGet, tcpSocket, exec, not 2"},
		{"negative probe period", probe("livenessProbe:\n    tcpSocket: {port: 8080}\n    periodSeconds: -1"), []string{"spec.livenessProbe.periodSeconds"}, "must not be negative"},
		{"negative failure threshold", probe("livenessProbe:\n    tcpSocket: {port: 8080}\n    failureThreshold: -3"), []string{"spec.livenessProbe.failureThreshold"}, "must not be negative"},
		{"probe period too long", probe("livenessProbe:\n    tcpSocket: {port: 8080}\n    periodSeconds: 3601"), []string{"spec.livenessProbe.periodSeconds"}, "at most 3600"},
		{"timeout longer than period", probe("readinessProbe:\n    tcpSocket: {port: 8080}\n    periodSeconds: 2\n    timeoutSeconds: 5"), []string{"spec.readinessProbe.timeoutSeconds"}, "longer than the period of 2 s"},
		{"timeout longer than default period", probe("readinessProbe:\n    tcpSocket: {port: 8080}\n    timeoutSeconds: 11"), []string{"spec.readinessProbe.timeoutSeconds"}, "longer than the period of 10 s"},
		{"liveness success threshold", probe("livenessProbe:\n    tcpSocket: {port: 8080}\n    successThreshold: 2"), []string{"spec.livenessProbe.successThreshold"}, "must be 1"},
		{"probe port out of range", probe("readinessProbe:\n    tcpSocket: {port: 70000}"), []string{"spec.readinessProbe.tcpSocket.port"}, "between 1 and 65535"},
		{"probe port zero", probe("readinessProbe:\n    httpGet: {path: /}"), []string{"spec.readinessProbe.httpGet.port"}, "between 1 and 65535"},
		{"probe port not exposed", probe("readinessProbe:\n    httpGet: {port: 8081}"), []string{"spec.readinessProbe.httpGet.port"}, "not a tcp port of spec.container.ports"},
		{"probe port udp only", probeOn(strings.Replace(base, "      - containerPort: 9090\n", "      - containerPort: 9090\n        protocol: udp\n", 1), "startupProbe:\n    tcpSocket: {port: 9090}"), []string{"spec.startupProbe.tcpSocket.port"}, "not a tcp port"},
		{"empty exec command", probe("livenessProbe:\n    exec: {command: []}"), []string{"spec.livenessProbe.exec.command"}, "required"},
		{"exec without program", probe("livenessProbe:\n    exec: {command: [\"\", x]}"), []string{"spec.livenessProbe.exec.command[0]"}, "must name the program"},
		{"NUL in exec command", probe("livenessProbe:\n    exec: {command: [/hello, \"a\\0b\"]}"), []string{"spec.livenessProbe.exec.command[1]"}, "NUL"},
		{"too many exec args", probe("livenessProbe:\n    exec:\n      command: [" + strings.TrimSuffix(strings.Repeat("a,", 65), ",") + "]"), []string{"spec.livenessProbe.exec.command"}, "at most 64 entries, got 65"},
		{"http path without slash", probe("readinessProbe:\n    httpGet: {port: 8080, path: ready}"), []string{"spec.readinessProbe.httpGet.path"}, "must start with /"},
		{"http path with space", probe("readinessProbe:\n    httpGet: {port: 8080, path: \"/a b\"}"), []string{"spec.readinessProbe.httpGet.path"}, "spaces or control characters"},
		{"expected status out of range", probe("readinessProbe:\n    httpGet: {port: 8080, expectedStatus: \"200-600\"}"), []string{"spec.readinessProbe.httpGet.expectedStatus"}, "between 100 and 599"},
		{"expected status reversed", probe("readinessProbe:\n    httpGet: {port: 8080, expectedStatus: \"299-200\"}"), []string{"spec.readinessProbe.httpGet.expectedStatus"}, "is empty"},
		{"expected status a word", probe("readinessProbe:\n    httpGet: {port: 8080, expectedStatus: ok}"), []string{"spec.readinessProbe.httpGet.expectedStatus"}, "must be a status code"},
		{"expected status a list", probe("readinessProbe:\n    httpGet: {port: 8080, expectedStatus: [200]}"), []string{"spec.readinessProbe.httpGet.expectedStatus"}, "must be a status code such as 200"},
		{"expected status a fraction", probe("readinessProbe:\n    httpGet: {port: 8080, expectedStatus: 200.5}"), []string{"spec.readinessProbe.httpGet.expectedStatus"}, "must be a status code"},
		{"unknown probe field", probe("readinessProbe:\n    tcpSocket: {port: 8080}\n    period: 5"), []string{"spec.readinessProbe.period"}, "unknown field"},
		{"probe on compose", "kind: Workload\nmetadata: {name: a}\nspec:\n  type: compose\n  compose: {inline: \"services: {a: {image: x}}\"}\n  livenessProbe:\n    tcpSocket: {port: 80}\n", []string{"spec.livenessProbe"}, "healthcheck in the compose file"},
		{"exec probe on a vm", vmProbe("livenessProbe:\n    exec: {command: [/bin/true]}"), []string{"spec.livenessProbe.exec"}, "not for VMs"},
		{"vm probe port not forwarded", vmProbe("readinessProbe:\n    tcpSocket: {port: 80}"), []string{"spec.readinessProbe.tcpSocket.port"}, "not the guest port of a tcp port forward"},

		// All errors are collected, in field order.
		{"several errors at once",
			strings.NewReplacer("name: hello", "name: BAD", "protocol: tcp", "protocol: sctp", "memory: 64Mi", "memory: -1").Replace(base),
			[]string{"metadata.name", "spec.container.ports[0].protocol", "spec.resources.memory"}, "DNS-1123"},
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range badCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.input))
			if err == nil {
				t.Fatalf("Parse succeeded, want error; got %+v", m)
			}
			if m != nil {
				t.Errorf("Parse returned a manifest with its error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false")
			}
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Field)
			}
			if tc.fields == nil {
				// Too many entries also yields duplicate targets; check the first.
				if !strings.Contains(e.Fields[0].Reason, tc.reason) {
					t.Fatalf("first reason %q does not contain %q (all: %v)", e.Fields[0].Reason, tc.reason, err)
				}
				return
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

// stableJSON renders a message as indented JSON with sorted keys; protojson
// alone is deliberately unstable in its spacing.
func stableJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	raw, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func testdataManifests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.yaml")
	}
	return files
}

func TestGolden(t *testing.T) {
	for _, file := range testdataManifests(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := stableJSON(t, m.ToApplyRequest())
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ApplyRequest differs from %s (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, file := range testdataManifests(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkRoundTrip(t, m)
		})
	}
}

// checkRoundTrip asserts Manifest -> ApplyRequest -> Workload -> Manifest
// (and through YAML text) -> ApplyRequest changes nothing, and that the
// proto-side validation agrees with the manifest's.
func checkRoundTrip(t *testing.T, m *Manifest) {
	t.Helper()
	req := m.ToApplyRequest()
	if err := ValidateApplyRequest(req); err != nil {
		t.Fatalf("ValidateApplyRequest of a valid manifest's request: %v", err)
	}
	if err := ValidateSpec(req.GetName(), req.GetSpec()); err != nil {
		t.Fatalf("ValidateSpec of a valid manifest's spec: %v", err)
	}
	w := &persysv1.Workload{Name: req.GetName(), Labels: req.GetLabels(), Spec: req.GetSpec(), Revision: 3, Uid: "u-1"}
	back := FromWorkload(w)
	if err := back.Validate(); err != nil {
		t.Fatalf("FromWorkload result does not validate: %v", err)
	}
	if req2 := back.ToApplyRequest(); !proto.Equal(req, req2) {
		t.Fatalf("round trip changed the request\nbefore: %v\nafter:  %v", req, req2)
	}
	text, err := yaml.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if len(text) > MaxSize {
		return // YAML can be longer than the input it came from.
	}
	reparsed, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse of FromWorkload YAML: %v\n%s", err, text)
	}
	if req3 := reparsed.ToApplyRequest(); !proto.Equal(req, req3) {
		t.Fatalf("YAML round trip changed the request\nbefore: %v\nafter:  %v\n%s", req, req3, text)
	}
}

func TestExampleHello(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "hello.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &persysv1.ApplyRequest{
		Name:   "hello",
		Labels: map[string]string{"app": "hello"},
		Spec: &persysv1.WorkloadSpec{
			Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 32 << 20},
			Container: &persysv1.ContainerSpec{
				Image:         "persys-hello:latest",
				Env:           map[string]string{"GREETING": "hello"},
				Ports:         []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: 18080, Protocol: "tcp", HostIp: "127.0.0.1"}},
				RestartPolicy: "on-failure",
			},
		},
	}
	if got := m.ToApplyRequest(); !proto.Equal(got, want) {
		t.Fatalf("examples/hello.yaml gives\n%v\nwant\n%v", got, want)
	}
}

func TestValidateSpec(t *testing.T) {
	valid := func() *persysv1.WorkloadSpec {
		return &persysv1.WorkloadSpec{
			Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			Resources: &persysv1.Resources{CpuMillis: 250, MemoryBytes: 64 << 20},
			Container: &persysv1.ContainerSpec{
				Image: "persys-hello:latest",
				Ports: []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: 18080}},
			},
		}
	}
	cases := []struct {
		name   string
		wlName string
		mutate func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec
		fields []string
		reason string
	}{
		{"valid", "hello", nil, nil, ""},
		{"valid with defaults left out", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Resources = nil; return s }, nil, ""},
		{"nil spec", "hello", func(*persysv1.WorkloadSpec) *persysv1.WorkloadSpec { return nil }, []string{"spec"}, "required"},
		{"nil spec and bad name", "Bad", func(*persysv1.WorkloadSpec) *persysv1.WorkloadSpec { return nil }, []string{"metadata.name", "spec"}, "DNS-1123"},
		{"bad name", "no_underscores", nil, []string{"metadata.name"}, "DNS-1123"},
		{"empty name", "", nil, []string{"metadata.name"}, "required"},
		{"negative memory", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Resources.MemoryBytes = -1; return s }, []string{"spec.resources.memory"}, "must not be negative"},
		{"negative cpu", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Resources.CpuMillis = -250; return s }, []string{"spec.resources.cpu"}, "must not be negative"},
		{"negative disk", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Resources.DiskBytes = -1 << 30; return s }, []string{"spec.resources.disk"}, "must not be negative"},
		{"unspecified type", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Type = 0; return s }, []string{"spec.type"}, "required"},
		{"unknown type enum", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Type = 42; return s }, []string{"spec.type"}, "must be one of"},
		{"compose type with a container section", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Type = persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE
			return s
		}, []string{"spec.compose", "spec.container"}, "required when spec.type is compose"},
		{"wait policy", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.NodeLossPolicy = persysv1.NodeLossPolicy_NODE_LOSS_POLICY_WAIT
			return s
		}, nil, ""},
		{"reschedule policy", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.NodeLossPolicy = persysv1.NodeLossPolicy_NODE_LOSS_POLICY_RESCHEDULE
			return s
		}, nil, ""},
		{"unknown node loss policy", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.NodeLossPolicy = 7; return s }, []string{"spec.nodeLossPolicy"}, "must be reschedule or wait"},
		{"unknown desired state", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.DesiredState = 9; return s }, []string{"spec.desiredState"}, "running or stopped"},
		{"missing container", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Container = nil; return s }, []string{"spec.container"}, "required"},
		{"port out of range", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Container.Ports[0].ContainerPort = 70000
			return s
		}, []string{"spec.container.ports[0].containerPort"}, "between 1 and 65535"},
		{"nil port", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Container.Ports = append(s.Container.Ports, nil)
			return s
		}, []string{"spec.container.ports[1].containerPort"}, "between 1 and 65535"},
		{"bad protocol", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Container.Ports[0].Protocol = "icmp"
			return s
		}, []string{"spec.container.ports[0].protocol"}, "tcp or udp"},
		{"reserved label", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Container.Labels = map[string]string{"persys.uid": "x"}
			return s
		}, []string{`spec.container.labels["persys.uid"]`}, "reserved"},
		{"relative volume target", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
			s.Container.Volumes = []*persysv1.Volume{{Type: "volume", Source: "data", Target: "data"}}
			return s
		}, []string{"spec.container.volumes[0].target"}, "absolute path"},
		{"bad image", "hello", func(s *persysv1.WorkloadSpec) *persysv1.WorkloadSpec { s.Container.Image = "bad image"; return s }, []string{"spec.container.image"}, "not a valid image reference"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid()
			if tc.mutate != nil {
				spec = tc.mutate(spec)
			}
			err := ValidateSpec(tc.wlName, spec)
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("ValidateSpec: %v", err)
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

func TestValidateApplyRequest(t *testing.T) {
	if err := ValidateApplyRequest(nil); err == nil {
		t.Fatal("nil request accepted")
	}
	req := &persysv1.ApplyRequest{
		Name:   "a",
		Labels: map[string]string{"bad key": "v"},
		Spec: &persysv1.WorkloadSpec{
			Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			Container: &persysv1.ContainerSpec{Image: "x"},
		},
	}
	var e *Error
	if err := ValidateApplyRequest(req); !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != `metadata.labels["bad key"]` {
		t.Fatalf("got %v, want one error on metadata.labels[\"bad key\"]", err)
	}
}

func TestApplyDefaults(t *testing.T) {
	spec := &persysv1.WorkloadSpec{Container: &persysv1.ContainerSpec{Ports: []*persysv1.PortMapping{{ContainerPort: 1}, nil, {ContainerPort: 2, Protocol: "udp"}}}}
	ApplyDefaults(spec)
	ApplyDefaults(nil)
	if spec.DesiredState != persysv1.DesiredState_DESIRED_STATE_RUNNING || spec.Resources == nil ||
		spec.Container.RestartPolicy != "no" || spec.Container.Ports[0].Protocol != "tcp" || spec.Container.Ports[2].Protocol != "udp" {
		t.Fatalf("defaults not applied: %v", spec)
	}
}

func TestQuantities(t *testing.T) {
	cpu := []struct {
		in   string
		want int64
		err  string
	}{
		{"250m", 250, ""},
		{"0.5", 500, ""},
		{".5", 500, ""},
		{"2", 2000, ""},
		{"+2", 2000, ""},
		{"1.", 1000, ""},
		{"1e3", 1000000, ""},
		{"1E", 0, "too large"},
		{"1k", 1000000, ""},
		{"0", 0, ""},
		{"-0", 0, ""},
		{"0.0001", 0, "whole number of millicores"},
		{"1.5m", 0, "whole number of millicores"},
		{"-250m", 0, "must not be negative"},
		{"", 0, "must not be empty"},
		{"m", 0, "not a quantity"},
		{"abc", 0, "not a quantity"},
		{"1e3m", 0, "not a quantity"},
		{"0x10", 0, "not a quantity"},
		{"1/2", 0, "not a quantity"},
		{"1e99", 0, "too large"},
		{strings.Repeat("1", 65), 0, "too long"},
	}
	for _, tc := range cpu {
		t.Run("cpu "+tc.in, func(t *testing.T) {
			got, err := ParseCPU(tc.in)
			checkQuantity(t, got, err, tc.want, tc.err)
		})
	}
	bytesCases := []struct {
		in   string
		want int64
		err  string
	}{
		{"64Mi", 64 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"1.5Gi", 3 << 29, ""},
		{"1Ki", 1024, ""},
		{"2Ti", 2 << 40, ""},
		{"1Pi", 1 << 50, ""},
		{"7Ei", 7 << 60, ""},
		{"8Ei", 0, "too large"},
		{"1K", 1000, ""},
		{"1k", 1000, ""},
		{"1M", 1e6, ""},
		{"1G", 1e9, ""},
		{"1T", 1e12, ""},
		{"1e9", 1e9, ""},
		{"1E3", 1000, ""},
		{"1048576", 1 << 20, ""},
		{"128974848000m", 128974848, ""},
		{"0.5", 0, "whole number of bytes"},
		{"-1", 0, "must not be negative"},
		{"64MB", 0, "not a quantity"},
		{"64mi", 0, "not a quantity"},
		{"1e999", 0, "not a quantity"},
	}
	for _, tc := range bytesCases {
		t.Run("bytes "+tc.in, func(t *testing.T) {
			got, err := ParseBytes(tc.in)
			checkQuantity(t, got, err, tc.want, tc.err)
		})
	}
}

func checkQuantity(t *testing.T, got int64, err error, want int64, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("got %d, %v; want error containing %q", got, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("got %d, %v; want %d", got, err, want)
	}
}

func TestFormatQuantities(t *testing.T) {
	cpu := []struct {
		in   int64
		want string
	}{{0, "0"}, {250, "250m"}, {1000, "1"}, {2500, "2500m"}, {-250, "-250m"}}
	for _, tc := range cpu {
		if got := FormatCPU(tc.in); got != tc.want {
			t.Errorf("FormatCPU(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in >= 0 {
			if back, err := ParseCPU(FormatCPU(tc.in)); err != nil || back != tc.in {
				t.Errorf("ParseCPU(FormatCPU(%d)) = %d, %v", tc.in, back, err)
			}
		}
	}
	b := []struct {
		in   int64
		want string
	}{{0, "0"}, {1, "1"}, {1536, "1536"}, {1024, "1Ki"}, {64 << 20, "64Mi"}, {3 << 29, "1536Mi"}, {1 << 30, "1Gi"}, {1e9, "1000000000"}, {5 << 60, "5Ei"}, {-(64 << 20), "-64Mi"}}
	for _, tc := range b {
		if got := FormatBytes(tc.in); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in >= 0 {
			if back, err := ParseBytes(FormatBytes(tc.in)); err != nil || back != tc.in {
				t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", tc.in, back, err)
			}
		}
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Fields: []FieldError{{Field: "spec.x", Reason: "bad"}, {Reason: "whole thing"}, {Field: "spec.y", Reason: "worse"}}}
	if got, want := e.Error(), "invalid manifest: spec.x: bad; whole thing; spec.y: worse"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got := (&Error{}).Error(); got != "invalid manifest" {
		t.Fatalf("empty Error() = %q", got)
	}
}

func TestBadRequestRoundTrip(t *testing.T) {
	_, err := Parse([]byte(strings.NewReplacer("name: hello", "name: BAD", "memory: 64Mi", "memory: -1").Replace(base)))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	br := e.BadRequest()
	if len(br.GetFieldViolations()) != 2 || br.FieldViolations[1].Field != "spec.resources.memory" || br.FieldViolations[1].Description != "must not be negative" {
		t.Fatalf("BadRequest = %v", br)
	}
	back := FromBadRequest(e.Error(), br)
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("FromBadRequest = %+v, want %+v", back, e)
	}
	if got := FromBadRequest("invalid manifest: manifest is empty", nil); len(got.Fields) != 1 || got.Fields[0] != (FieldError{Reason: "manifest is empty"}) {
		t.Fatalf("FromBadRequest without details = %+v", got)
	}
	if got := FromBadRequest("", nil); got.Error() != "invalid manifest: invalid manifest" && got.Fields[0].Reason != "invalid manifest" {
		t.Fatalf("FromBadRequest empty = %+v", got)
	}
}

// TestShapeCoversAllTypes guards checkShape against a Manifest field type
// it does not know: a fully populated manifest must pass it cleanly.
func TestShapeCoversAllTypes(t *testing.T) {
	// Each full*.yaml is a valid manifest of one workload type; together
	// they set every field.
	set := map[string]bool{}
	all := map[string]bool{}
	for _, file := range []string{"full.yaml", "full-compose.yaml", "full-compose-git.yaml", "full-vm.yaml", "full-vm-password.yaml", "full-probes.yaml", "full-probes-2.yaml", "full-probes-3.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		var c collector
		checkShape(&c, "", v, manifestType)
		if err := c.err(); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var walk func(rv reflect.Value, path string)
		walk = func(rv reflect.Value, path string) {
			switch rv.Kind() {
			case reflect.Pointer:
				if !rv.IsNil() {
					walk(rv.Elem(), path)
				}
			case reflect.Struct:
				for i := range rv.NumField() {
					f := rv.Field(i)
					p := path + "." + rv.Type().Field(i).Name
					all[p] = true
					if !f.IsZero() {
						set[p] = true
					}
					walk(f, p)
				}
			case reflect.Slice:
				for i := range rv.Len() {
					walk(rv.Index(i), path)
				}
			}
		}
		walk(reflect.ValueOf(m), "Manifest")
	}
	for p := range all {
		if !set[p] {
			t.Errorf("no testdata/full*.yaml sets %s", p)
		}
	}
}

func TestNodeLossPolicy(t *testing.T) {
	tests := []struct {
		name  string
		value string // "" leaves the key out
		want  persysv1.NodeLossPolicy
	}{
		{"absent stays unspecified", "", persysv1.NodeLossPolicy_NODE_LOSS_POLICY_UNSPECIFIED},
		{"reschedule", "reschedule", persysv1.NodeLossPolicy_NODE_LOSS_POLICY_RESCHEDULE},
		{"wait", "wait", persysv1.NodeLossPolicy_NODE_LOSS_POLICY_WAIT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			if tt.value != "" {
				in = edit("type: container", "type: container\n  nodeLossPolicy: "+tt.value)
			}
			m, err := Parse([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			req := m.ToApplyRequest()
			if got := req.GetSpec().GetNodeLossPolicy(); got != tt.want {
				t.Fatalf("policy = %v, want %v", got, tt.want)
			}
			back := FromWorkload(&persysv1.Workload{Name: req.GetName(), Labels: req.GetLabels(), Spec: req.GetSpec()})
			if back.Spec.NodeLossPolicy != tt.value {
				t.Fatalf("FromWorkload policy = %q, want %q", back.Spec.NodeLossPolicy, tt.value)
			}
			checkRoundTrip(t, m)
		})
	}
}
