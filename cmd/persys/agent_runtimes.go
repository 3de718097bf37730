package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/moby/moby/client"
	"github.com/spf13/pflag"

	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/composespec"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/compose"
	"github.com/persys-dev/compute/internal/runtime/qemu"
)

// runtimeOptions are the agent's flags for the compose and VM runtimes
// that run next to the container runtime.
type runtimeOptions struct {
	compose      bool
	vm           string
	vmAccel      string
	storagePools []string
	// The node's policy on host-level features (default: none allowed).
	allowPrivileged bool
	allowHostPaths  []string
	// dynamicPorts is the range dynamic host ports are picked from.
	dynamicPorts string
}

func (o *runtimeOptions) flags(f *pflag.FlagSet) {
	f.BoolVar(&o.compose, "compose", true, "run Docker Compose workloads (with --runtime docker)")
	f.StringVar(&o.vm, "vm", "auto", "run VMs with QEMU: auto (when qemu-system-x86_64 is installed), on or off")
	f.StringVar(&o.vmAccel, "vm-accel", "", "VM acceleration: kvm or tcg (default: kvm when it really works, else tcg)")
	f.StringArrayVar(&o.storagePools, "storage-pool", nil, "storage pool for VM disks, NAME=PATH or NAME=PATH:SIZE (repeatable; default: pool \"default\" in the data folder)")
	f.BoolVar(&o.allowPrivileged, "allow-privileged", false, "run workloads that ask for privileged mode, devices, added capabilities, host network/PID/IPC or a VM bridge (their applier also needs permission workloads.host)")
	f.StringArrayVar(&o.allowHostPaths, "allow-host-path", nil, "absolute host folder under which workloads may bind host paths (repeatable; default: none)")
	dynamicPortsFlag(f, &o.dynamicPorts)
}

// dynamicPortsFlag registers --dynamic-ports, for the agent and for
// persys dev alike.
func dynamicPortsFlag(f *pflag.FlagSet, v *string) {
	f.StringVar(v, "dynamic-ports", hostaccess.DefaultDynamicPorts.String(), "host ports the scheduler picks dynamic ports from on this node, FIRST-LAST, or off")
}

// portRange is --dynamic-ports, checked by validate.
func (o *runtimeOptions) portRange() hostaccess.PortRange {
	r, _ := hostaccess.ParsePortRange(o.dynamicPorts)
	return r
}

// policy is the node's policy on host-level features, reported at
// registration (placement honours it) and enforced again on every apply.
func (o *runtimeOptions) policy() hostaccess.Policy {
	return hostaccess.Policy{AllowPrivileged: o.allowPrivileged, AllowHostPaths: append([]string(nil), o.allowHostPaths...)}
}

func (o *runtimeOptions) validate() error {
	switch o.vm {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--vm %q is not one of auto, on, off", o.vm)
	}
	switch o.vmAccel {
	case "", "kvm", "tcg":
	default:
		return fmt.Errorf("--vm-accel %q is not kvm or tcg", o.vmAccel)
	}
	for _, p := range o.storagePools {
		if _, err := agent.ParseStoragePool(p); err != nil {
			return fmt.Errorf("--storage-pool: %w", err)
		}
	}
	for _, p := range o.allowHostPaths {
		if err := hostaccess.ValidatePolicyPath(p); err != nil {
			return fmt.Errorf("--allow-host-path: %w", err)
		}
	}
	if _, err := hostaccess.ParsePortRange(o.dynamicPorts); err != nil {
		return fmt.Errorf("--dynamic-ports: %w", err)
	}
	return nil
}

// pools parses --storage-pool, or gives the default pool in dataDir, and
// creates their folders.
func (o *runtimeOptions) pools(dataDir string) ([]agent.StoragePool, error) {
	var out []agent.StoragePool
	seen := map[string]bool{}
	for _, s := range o.storagePools {
		p, err := agent.ParseStoragePool(s)
		if err != nil {
			return nil, fmt.Errorf("--storage-pool: %w", err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("--storage-pool: pool %q given twice", p.Name)
		}
		seen[p.Name] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		out = append(out, agent.StoragePool{Name: "default", Path: filepath.Join(dataDir, "pools", "default")})
	}
	for _, p := range out {
		if err := os.MkdirAll(p.Path, 0o755); err != nil {
			return nil, fmt.Errorf("--storage-pool %s: %w", p.Name, err)
		}
	}
	return out, nil
}

// extraRuntimes builds the compose runtime (on the container runtime's
// engine) and the QEMU runtime, as the flags ask. dockerCli is nil when the
// container runtime is not Docker.
func (o *runtimeOptions) extraRuntimes(nodeID string, cluster *runtime.Cluster, dataDir string, dockerCli *client.Client, log *slog.Logger) (rts []runtime.Runtime, pools []agent.StoragePool, accel string, err error) {
	if o.compose && dockerCli != nil {
		rt, err := compose.New(compose.Config{NodeID: nodeID, Cluster: cluster, StateDir: filepath.Join(dataDir, "compose"), Client: dockerCli, Logger: log,
			Spec: composespec.OptionsFor(o.allowPrivileged, o.allowHostPaths)})
		if err != nil {
			return nil, nil, "", fmt.Errorf("compose runtime: %w", err)
		}
		rts = append(rts, rt)
	}
	useVM := o.vm == "on"
	if o.vm == "auto" {
		_, err := exec.LookPath("qemu-system-x86_64")
		useVM = err == nil
	}
	if !useVM {
		return rts, nil, "", nil
	}
	pools, err = o.pools(dataDir)
	if err != nil {
		return nil, nil, "", err
	}
	byName := make(map[string]string, len(pools))
	for _, p := range pools {
		byName[p.Name] = p.Path
	}
	vm, err := qemu.New(qemu.Config{NodeID: nodeID, Cluster: cluster, StateDir: filepath.Join(dataDir, "vms"), Pools: byName, Accel: o.vmAccel, Logger: log})
	if err != nil {
		if o.vm == "auto" {
			log.Warn("VM runtime unavailable", "err", err)
			return rts, nil, "", nil
		}
		return nil, nil, "", errors.Join(errors.New("--vm on"), err)
	}
	return append(rts, vm), pools, vm.Accel(), nil
}
