package composespec

import (
	"context"
	"errors"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// parseErrorCase is a compose file Parse refuses, with the field named.
type parseErrorCase struct {
	name     string
	yaml     string
	env      map[string]string
	path     string
	contains string
}

// parseErrorCases serve TestParseErrors and seed FuzzParse.
func parseErrorCases() []parseErrorCase {
	big := "services:\n  web:\n    image: x\n" + "# " + strings.Repeat("x", 10<<20) + "\n"
	return []parseErrorCase{
		{"too large", big, nil, "", "larger than the 1048576 bytes (1 MiB)"},
		{"empty", "  \n", nil, "", "empty"},
		{"invalid yaml", "services:\n  web:\n    image: x\n   bad: [\n", nil, "", "invalid YAML"},
		{"top level list", "- a\n- b\n", nil, "", "top level must be a mapping"},
		{"unknown top-level key", "foo: 1\nservices:\n  web:\n    image: x\n", nil, "foo", "not a known top-level key"},
		{"unknown service key", "services:\n  web:\n    image: x\n    bogus: 1\n", nil, "services.web.bogus", "not a known field"},
		{"schema type", "services:\n  web:\n    image: x\n    ports: 12\n", nil, "services.web.ports", "must be a array"},
		{"schema item", "services:\n  web:\n    image: x\n    ports:\n      - [1]\n", nil, "services.web.ports[0]", ""},
		{"negative replicas", "services:\n  web:\n    image: x\n    deploy:\n      replicas: -1\n", nil, "services.web.deploy.replicas", "greater than or equal to 0"},
		{"required variable", "services:\n  web:\n    image: x\n    environment:\n      A: ${X:?x must be set}\n", nil, "services.web.environment.A", "x must be set"},
		{"build", "services:\n  web:\n    build: .\n", nil, "services.web.build", "not supported"},
		{"env_file", "services:\n  web:\n    image: x\n    env_file: .env\n", nil, "services.web.env_file", "cannot be shipped"},
		{"include", "include:\n  - other.yaml\nservices:\n  web:\n    image: x\n", nil, "include", "not supported"},
		{"extends file", "services:\n  web:\n    image: x\n    extends:\n      file: base.yaml\n      service: b\n", nil, "services.web.extends.file", "not supported"},
		{"secret file", "services:\n  web:\n    image: x\nsecrets:\n  s:\n    file: ./s.txt\n", nil, "secrets.s.file", "cannot be shipped"},
		{"host network", "services:\n  web:\n    image: x\n    network_mode: host\n", nil, "services.web.network_mode", "not allowed"},
		{"host network interpolated", "services:\n  web:\n    image: x\n    network_mode: ${M}\n", map[string]string{"M": "host"}, "services.web.network_mode", "not allowed"},
		{"privileged", "services:\n  web:\n    image: x\n    privileged: true\n", nil, "services.web.privileged", "not allowed"},
		{"host bind", "services:\n  web:\n    image: x\n    volumes: ['/etc:/x']\n", nil, "services.web.volumes[0]", "bind mount"},
		{"devices", "services:\n  web:\n    image: x\n    devices: ['/dev/sda:/dev/sda']\n", nil, "services.web.devices", "not allowed"},
		{"cap sys_admin", "services:\n  web:\n    image: x\n    cap_add: [NET_ADMIN, CAP_SYS_ADMIN]\n", nil, "services.web.cap_add[1]", "not allowed"},
		{"volume device", "services:\n  web:\n    image: x\nvolumes:\n  d:\n    driver_opts: {type: none, o: bind, device: /etc}\n", nil, "volumes.d.driver_opts.device", "not allowed"},
		{"no image", "services:\n  web:\n    command: [x]\n", nil, "services.web.image", "required"},
		{"bad env name", "services:\n  web:\n    image: x\n", map[string]string{"1A": "x"}, "compose.env.1A", "not a valid variable name"},
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(context.Background(), []byte(tt.yaml), tt.env, "p")
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *Error", err)
			}
			if ce.Path != tt.path {
				t.Errorf("path = %q, want %q (error %v)", ce.Path, tt.path, err)
			}
			if !strings.Contains(ce.Reason, tt.contains) {
				t.Errorf("reason = %q, want it to contain %q", ce.Reason, tt.contains)
			}
		})
	}
}

// okCompose is a compose file Parse accepts with GREETING set.
const okCompose = `
services:
  web:
    image: ${IMG:-hello}
    init: true
    environment:
      GREETING: ${GREETING}
    deploy:
      replicas: 2
      resources:
        limits:
          cpus: "0.5"
          memory: 64M
  db:
    image: db
    cpus: 0.25
    mem_limit: 32m
    volumes:
      - data:/data
  base:
    image: b
  ext:
    extends: {service: base}
volumes:
  data: {}
x-meta: ignored
`

func TestParseOK(t *testing.T) {
	p, err := Parse(context.Background(), []byte(okCompose), map[string]string{"GREETING": "hi"}, "persys-demo")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if p.Name != "persys-demo" {
		t.Errorf("name = %q", p.Name)
	}
	web := p.Services["web"]
	if web.Image != "hello" || *web.Environment["GREETING"] != "hi" {
		t.Errorf("web image %q env %v", web.Image, web.Environment)
	}
	if p.Services["ext"].Image != "b" {
		t.Errorf("extends did not apply: %+v", p.Services["ext"])
	}
	cpu, mem := ResourcesOf(p)
	if cpu != 2*500+250 {
		t.Errorf("cpu millis = %d, want 1250", cpu)
	}
	if want := int64(2*64<<20 + 32<<20); mem != want {
		t.Errorf("memory = %d, want %d", mem, want)
	}
}

func TestParseOptionsAllow(t *testing.T) {
	y := "services:\n  web:\n    image: x\n    privileged: true\n    network_mode: host\n    volumes: ['/srv/data/a:/a']\n"
	_, err := ParseWithOptions(context.Background(), []byte(y), nil, "p", Options{
		AllowHostNetwork: true, AllowPrivileged: true, AllowedBindPaths: []string{"/srv/data"},
	})
	if err != nil {
		t.Fatalf("ParseWithOptions: %v", err)
	}
}

func TestParseProjectName(t *testing.T) {
	for _, name := range []string{"", "Upper", "-x", "a b"} {
		_, err := Parse(context.Background(), []byte("services:\n  web:\n    image: x\n"), nil, name)
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "name" {
			t.Errorf("name %q: error %v, want path name", name, err)
		}
	}
}

func TestValidateSpec(t *testing.T) {
	ok := "services:\n  web:\n    image: x\n"
	tests := []struct {
		name string
		spec *persysv1.ComposeSpec
		path string
	}{
		{"nil", nil, "compose"},
		{"neither", &persysv1.ComposeSpec{}, "compose"},
		{"both", &persysv1.ComposeSpec{Inline: ok, Git: &persysv1.GitSource{Url: "https://x"}}, "compose"},
		{"git no url", &persysv1.ComposeSpec{Git: &persysv1.GitSource{}}, "compose.git.url"},
		{"git path escapes", &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: "https://x", Path: "../x.yaml"}}, "compose.git.path"},
		{"git path absolute", &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: "https://x", Path: "/x.yaml"}}, "compose.git.path"},
		{"inline bad", &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: x\n    ports: 1\n"}, "services.web.ports"},
		{"retain", &persysv1.ComposeSpec{Inline: ok, VolumeRetain: 9}, "compose.volume_retain"},
		{"inline ok", &persysv1.ComposeSpec{Inline: ok}, ""},
		{"git ok", &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: "https://x", Path: "deploy/compose.yaml"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSpec(context.Background(), tt.spec)
			if tt.path == "" {
				if err != nil {
					t.Fatalf("ValidateSpec: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Path != tt.path {
				t.Fatalf("error %v, want path %q", err, tt.path)
			}
		})
	}
}

func TestIndexPath(t *testing.T) {
	for in, want := range map[string]string{
		"services.web.ports.0":    "services.web.ports[0]",
		"services.web.ports.12.x": "services.web.ports[12].x",
		"services.web.a.0.b.3":    "services.web.a[0].b[3]",
		"services.web0.ports":     "services.web0.ports",
	} {
		if got := indexPath(in); got != want {
			t.Errorf("indexPath(%q) = %q, want %q", in, got, want)
		}
	}
}
