package manifest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestComposeAndVMInvalid(t *testing.T) {
	const compose = "kind: Workload\nmetadata: {name: c}\nspec:\n  type: compose\n"
	const vm = "kind: Workload\nmetadata: {name: v}\nspec:\n  type: vm\n"
	tests := []struct {
		name   string
		in     string
		fields []string
		reason string
	}{
		{"compose without source", compose + "  compose: {env: {A: b}}\n", []string{"spec.compose"}, "needs inline"},
		{"compose with both sources", compose + "  compose: {inline: 'services: {}', git: {url: 'https://x/y.git'}}\n", []string{"spec.compose"}, "not both"},
		{"git url scheme", compose + "  compose: {git: {url: 'ftp://x/y'}}\n", []string{"spec.compose.git.url"}, "http, https"},
		{"git path escapes", compose + "  compose: {git: {url: 'https://x/y', path: '../etc/passwd'}}\n", []string{"spec.compose.git.path"}, "inside the repository"},
		{"git ref", compose + "  compose: {git: {url: 'https://x/y', ref: 'a..b'}}\n", []string{"spec.compose.git.ref"}, "branch, tag or commit"},
		{"poll too often", compose + "  compose: {git: {url: 'https://x/y', pollIntervalSeconds: 1}}\n", []string{"spec.compose.git.pollIntervalSeconds"}, "at least 10"},
		{"retain word", compose + "  compose: {inline: 'services: {}', volumeRetain: keep}\n", []string{"spec.compose.volumeRetain"}, "delete or retain"},
		{"secret env name", compose + "  compose: {inline: 'services: {}'}\n  secretEnv: [{name: '1X', secret: s, key: k}]\n", []string{"spec.secretEnv[0].name"}, "must match"},
		{"secret env no key", compose + "  compose: {inline: 'services: {}'}\n  secretEnv: [{name: X, secret: s}]\n", []string{"spec.secretEnv[0].key"}, "required"},
		{"secret file relative", compose + "  compose: {inline: 'services: {}'}\n  secretFiles: [{secret: s, path: run/x}]\n", []string{"spec.secretFiles[0].path"}, "absolute"},
		{"services on container", "kind: Workload\nmetadata: {name: c}\nspec:\n  type: container\n  container: {image: busybox}\n  secretEnv: [{name: X, secret: s, key: k, services: [web]}]\n", []string{"spec.secretEnv[0].services"}, "compose workloads only"},
		{"pull secret name", compose + "  compose: {inline: 'services: {}'}\n  imagePullSecrets: ['Bad Name']\n", []string{"spec.imagePullSecrets[0]"}, "DNS-1123"},
		{"vm no vcpus", vm + "  vm: {memory: 256Mi, kernelBoot: {pool: p, kernel: k}}\n", []string{"spec.vm.vcpus"}, "between 1 and"},
		{"vm tiny memory", vm + "  vm: {vcpus: 1, memory: 1Mi, kernelBoot: {pool: p, kernel: k}}\n", []string{"spec.vm.memory"}, "at least"},
		{"vm nothing to boot", vm + "  vm: {vcpus: 1, memory: 256Mi, disks: [{name: d, pool: p, size: 1Gi}]}\n", []string{"spec.vm.disks"}, "nothing to boot"},
		{"vm disk path", vm + "  vm: {vcpus: 1, memory: 256Mi, disks: [{name: d, pool: p, baseImage: ../x}]}\n", []string{"spec.vm.disks[0].baseImage"}, "no '/'"},
		{"vm blank disk without size", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, disks: [{name: d, pool: p}]}\n", []string{"spec.vm.disks[0].size"}, "required for a blank disk"},
		{"vm accel", vm + "  vm: {vcpus: 1, memory: 256Mi, accel: hvf, kernelBoot: {pool: p, kernel: k}}\n", []string{"spec.vm.accel"}, "kvm or tcg"},
		{"vm mac", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, networks: [{mode: bridge, bridge: br0, mac: zz}]}\n", []string{"spec.vm.networks[0].mac"}, "hex"},
		{"vm forward twice", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, networks: [{portForwards: [{hostPort: 2222, guestPort: 22}, {hostPort: 2222, guestPort: 23}]}]}\n", []string{"spec.vm.networks[0].portForwards[1].hostPort"}, "already forwarded"},
		{"vm user data NUL", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, cloudInit: {userData: \"a\\0b\"}}\n", []string{"spec.vm.cloudInit.userData"}, "NUL"},
		{"vm user data too large", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, cloudInit: {userData: '" + strings.Repeat("a", MaxCloudInitPart+1) + "'}}\n", []string{"spec.vm.cloudInit.userData"}, "larger than the limit"},
		{"vm plain password", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, login: {user: u, passwordHash: secret}}\n", []string{"spec.vm.login.passwordHash"}, "must be a crypt(3) hash"},
		// The login rules are cloudinit's, as the scheduler and the qemu runtime apply them.
		{"vm root login", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, login: {user: root}}\n", []string{"spec.vm.login.user"}, "root is not allowed"},
		{"vm too many ssh keys", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, login: {user: u, sshAuthorizedKeys: [" + strings.TrimSuffix(strings.Repeat("'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA',", 101), ",") + "]}}\n", []string{"spec.vm.login.sshAuthorizedKeys"}, "more than the limit of 100"},
		{"vm generated password needs secret", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, login: {user: u, generatePassword: true}}\n", []string{"spec.vm.login.passwordSecret"}, "required"},
		{"vm ssh key", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, login: {user: u, sshAuthorizedKeys: [hello]}}\n", []string{"spec.vm.login.sshAuthorizedKeys[0]"}, "OpenSSH public key"},
		{"vm with secret env", vm + "  vm: {vcpus: 1, memory: 256Mi, kernelBoot: {pool: p, kernel: k}}\n  secretEnv: [{name: X, secret: s, key: k}]\n", []string{"spec.secretEnv"}, "container and compose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("err = %v, want *Error", err)
			}
			var fields []string
			for _, f := range e.Fields {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Fatalf("fields = %q, want %q (%v)", fields, tt.fields, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q lacks %q", err, tt.reason)
			}
		})
	}
}

func TestVMResourcesDerived(t *testing.T) {
	m, err := Parse([]byte("kind: Workload\nmetadata: {name: v}\nspec:\n  type: vm\n  vm: {vcpus: 2, memory: 256Mi, kernelBoot: {pool: p, kernel: k}, disks: [{name: d, pool: fast, size: 1Gi}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := m.ToApplyRequest().GetSpec().GetResources()
	if r.GetCpuMillis() != 2000 || r.GetMemoryBytes() != 256<<20+VMMemoryOverhead || r.GetDiskBytes() != 0 {
		t.Fatalf("resources = %v", r)
	}
	d := PoolDemand(m.ToApplyRequest().GetSpec())
	if d["fast"] != 1<<30 || len(d) != 2 {
		t.Fatalf("pool demand = %v", d)
	}
}

// TestExamplesParse keeps the manifests in examples/ valid.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parse := func(b []byte) error { _, err := Parse(b); return err }
		if KindOf(data) == KindService {
			parse = func(b []byte) error { _, err := ParseService(b); return err }
		}
		if err := parse(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
