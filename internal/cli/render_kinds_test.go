package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func fixtureCompose() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "shop", Uid: "c0ffee-1", Revision: 2, CreatedAt: ago(time.Hour), UpdatedAt: ago(time.Minute),
			Spec: &persysv1.WorkloadSpec{
				Type:         persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE,
				DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
				Resources:    &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 512 * mi},
				Compose: &persysv1.ComposeSpec{
					Git: &persysv1.GitSource{Url: "http://127.0.0.1:9418/shop.git", Ref: "main", Path: "deploy/compose.yaml",
						ResolvedCommit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904", CredentialsSecret: "shop-git"},
					Env: map[string]string{"STAGE": "prod"},
				},
				SecretEnv:        []*persysv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "shop-db", Key: "password"}},
				SecretFiles:      []*persysv1.SecretFile{{Secret: "shop-tls", Key: "tls.crt", Path: "/run/secrets/tls.crt"}},
				ImagePullSecrets: []string{"shop-registry"},
			},
		},
		Status: &persysv1.WorkloadStatus{
			Name: "shop", State: persysv1.ActualState_ACTUAL_STATE_FAILED, NodeId: "node-1", Revision: 2,
			Reason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, Message: "service worker exited with code 3",
			UpdatedAt: ago(30 * time.Second),
			Services: []*persysv1.ServiceStatus{
				{Name: "web", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, Running: 2, Desired: 2, Image: "shop/web:2"},
				{Name: "worker", State: persysv1.ActualState_ACTUAL_STATE_FAILED, Running: 0, Desired: 1, Image: "shop/worker:2",
					ExitCode: 3, Message: "exited"},
			},
		},
		Assignment: &persysv1.Assignment{Name: "shop", NodeId: "node-1", Revision: 2, PlacedAt: ago(time.Hour)},
	}
}

func fixtureVM() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "vm-01", Uid: "vm-uid", Revision: 1, CreatedAt: ago(time.Hour), UpdatedAt: ago(time.Hour),
			Spec: &persysv1.WorkloadSpec{
				Type:         persysv1.WorkloadType_WORKLOAD_TYPE_VM,
				DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
				Resources:    &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 320 * mi},
				Vm: &persysv1.VMSpec{
					Vcpus: 1, MemoryBytes: 256 * mi, Accel: "tcg",
					Disks: []*persysv1.VMDisk{
						{Name: "root", Pool: "default", BaseImage: "base.raw", BootIndex: 1},
						{Name: "data", Pool: "default", SizeBytes: gi},
					},
					KernelBoot: &persysv1.VMKernelBoot{Pool: "default", Kernel: "vmlinuz", Initrd: "initrd.gz"},
					Networks:   []*persysv1.VMNetwork{{PortForwards: []*persysv1.VMPortForward{{HostPort: 2222, GuestPort: 22}}}},
					Login: &persysv1.VMLogin{User: "persys", GeneratePassword: true, PasswordSecret: "vm-01-password",
						SshAuthorizedKeys: []string{"ssh-ed25519 AAAA key"}},
				},
			},
		},
		Status: &persysv1.WorkloadStatus{
			Name: "vm-01", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1,
			RuntimeId: "4242", UpdatedAt: ago(time.Minute), Addresses: []string{"10.0.2.15"},
			Details: map[string]string{"accel": "tcg", "pid": "4242"},
		},
		Assignment: &persysv1.Assignment{Name: "vm-01", NodeId: "node-1", Revision: 1, PlacedAt: ago(time.Hour)},
	}
}

func TestRenderKindsGolden(t *testing.T) {
	node := fixtureNodes()[0]
	node.Capabilities.VmAccel = "tcg"
	node.Capabilities.StoragePools = []*persysv1.StoragePool{{Name: "default", Path: "/var/lib/persys/pool",
		CapacityBytes: 100 * gi, FreeBytes: 80 * gi, AllocatedBytes: gi}}
	tests := []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"describe-workload-compose", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureCompose(), fixedNow) }},
		{"describe-workload-vm", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureVM(), fixedNow) }},
		{"describe-workload-compose-health", func(b *bytes.Buffer) error {
			v := fixtureCompose()
			v.Status.Services[0].Health = persysv1.HealthState_HEALTH_STATE_STARTING
			v.Status.Health, v.Status.HealthCheck = persysv1.HealthState_HEALTH_STATE_STARTING, "compose healthcheck"
			return printDescribeWorkload(b, v, fixedNow)
		}},
		{"describe-node-pools", func(b *bytes.Buffer) error { return printDescribeNode(b, node, nil, fixedNow) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.render(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestDescribeNeverShowsSecretValues(t *testing.T) {
	var b bytes.Buffer
	if err := printDescribeWorkload(&b, fixtureCompose(), fixedNow); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"env DB_PASSWORD from shop-db/password", "file /run/secrets/tls.crt from shop-tls/tls.crt", "pull with shop-registry"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, b.String())
		}
	}
}
