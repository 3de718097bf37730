package composespec

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// FuzzParse feeds inline compose files (written by any user who may
// apply a workload) to Parse: it never panics, refuses only with *Error,
// and nothing it accepts under the default options reaches the host (no
// privileged service, host namespace, device, dangerous capability, host
// bind mount or host device volume) or lacks an image.
func FuzzParse(f *testing.F) {
	for _, c := range parseErrorCases() {
		if len(c.yaml) <= 64<<10 {
			f.Add([]byte(c.yaml), "hi")
		}
	}
	f.Add([]byte(okCompose), "hi")
	f.Add([]byte("services:\n  web:\n    image: x\n    network_mode: ${V}\n"), "host")
	f.Add([]byte("services:\n  web:\n    image: x\n    volumes: ['${V}:/x']\n"), "/etc")
	f.Add([]byte("services:\n  web:\n    image: x\n    cap_add: ['${V}']\n"), "cap_sys_admin")
	f.Add([]byte("services:\n  web:\n    image: x\n    privileged: ${V}\n"), "true")
	f.Add([]byte("services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: ${V}\n        target: /x\n"), "/")
	f.Add([]byte("services:\n  web:\n    image: x\nvolumes:\n  d:\n    driver_opts: {device: '${V}'}\n"), "/dev/sda")
	f.Add([]byte("a: &a [*a, *a]\nservices: {web: {image: x}}\n"), "")
	f.Add([]byte("services:\n  a: {image: x, extends: {service: b}}\n  b: {image: y, extends: {service: a}}\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, v string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := Parse(ctx, data, map[string]string{"V": v}, "p")
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) && ctx.Err() == nil {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			return
		}
		if msg := escape(p); msg != "" {
			t.Fatalf("accepted a file that reaches the host: %s", msg)
		}
	})
}

// escape describes what of p reaches the host, or "".
func escape(p *types.Project) string {
	for name, s := range p.Services {
		switch {
		case s.Image == "":
			return "service " + name + " has no image"
		case s.Privileged:
			return "service " + name + " is privileged"
		case s.NetworkMode == "host" || s.Pid == "host" || s.Ipc == "host":
			return "service " + name + " uses a host namespace"
		case len(s.Devices) > 0:
			return "service " + name + " has devices"
		case len(s.EnvFiles) > 0:
			return "service " + name + " has env files"
		}
		for _, c := range s.CapAdd {
			if u := strings.TrimPrefix(strings.ToUpper(c), "CAP_"); u == "ALL" || u == "SYS_ADMIN" {
				return "service " + name + " adds " + c
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				return "service " + name + " binds " + v.Source
			}
		}
	}
	for name, v := range p.Volumes {
		if dev := v.DriverOpts["device"]; strings.HasPrefix(filepath.Clean(dev), "/") {
			return "volume " + name + " has device " + dev
		}
	}
	return ""
}
