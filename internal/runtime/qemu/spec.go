package qemu

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/cloudinit"
	"github.com/persys-dev/compute/internal/runtime"
)

// Limits of a VM spec.
const (
	MaxVCPUs        = 64
	MinMemoryBytes  = 32 << 20
	MaxMemoryBytes  = 1 << 40
	DefaultMemory   = 512 << 20
	MaxDisks        = 16
	MaxISOs         = 3 // IDE slots left beside the seed
	MaxDiskBytes    = 16 << 40
	MaxNetworks     = 8
	MaxPortForwards = 64
	MaxCmdlineBytes = 4096
	maxUnixSocket   = 107
	defaultStop     = 30 * time.Second
)

var (
	nameRe     = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$`)
	diskNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	bridgeRe   = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
)

// plan is a validated VM spec with every pool path resolved.
type plan struct {
	vcpus       int
	memMiB      int64
	accel       string
	disks       []diskPlan
	kernel      string
	initrd      string
	cmdline     string
	nets        []netPlan
	stopTimeout time.Duration
	retain      bool
	seed        cloudinit.Input
	hash        string
}

type diskKind string

const (
	diskOverlay diskKind = "overlay"
	diskCopy    diskKind = "copy"
	diskBlank   diskKind = "blank"
	diskISO     diskKind = "iso"
)

type diskPlan struct {
	Name      string   `json:"name"`
	Kind      diskKind `json:"kind"`
	Path      string   `json:"path"`
	Base      string   `json:"base,omitempty"`
	Size      int64    `json:"size,omitempty"`
	BootIndex int      `json:"bootIndex,omitempty"`
}

type netPlan struct {
	Mode     string
	Bridge   string
	MAC      string
	Forwards []forward
}

type forward struct {
	Proto     string
	HostIP    string
	HostPort  uint32
	GuestPort uint32
}

func (f forward) String() string {
	return fmt.Sprintf("%s %s->%d/%s", f.Proto, net.JoinHostPort(f.HostIP, strconv.Itoa(int(f.HostPort))), f.GuestPort, f.Proto)
}

func invalid(format string, args ...any) error {
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, format, args...)
}

func storage(format string, args ...any) error {
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, nil, format, args...)
}

// poolFile resolves rel inside pool: an unknown pool or a missing file is a
// STORAGE failure, a path leaving the pool an INVALID_SPEC one.
func (r *Runtime) poolFile(field, pool, rel string) (string, error) {
	if pool == "" {
		return "", invalid("%s: a pool is required", poolField(field))
	}
	dir, ok := r.cfg.Pools[pool]
	if !ok {
		return "", storage("%s: storage pool %q is not configured on node %s", poolField(field), pool, r.cfg.NodeID)
	}
	if rel == "" {
		return dir, nil
	}
	if !filepath.IsLocal(rel) {
		return "", invalid("%s: %q must be a relative path inside pool %q", field, rel, pool)
	}
	p := filepath.Join(dir, rel)
	st, err := os.Stat(p)
	if err != nil {
		return "", storage("%s: %q not found in pool %q", field, rel, pool)
	}
	if !st.Mode().IsRegular() {
		return "", storage("%s: %q in pool %q is not a regular file", field, rel, pool)
	}
	return p, nil
}

// poolField turns "spec.vm.disks[0].baseImage" into "spec.vm.disks[0].pool".
func poolField(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[:i] + ".pool"
	}
	return field
}

// buildPlan validates inst's VM spec and resolves it against the node.
func (r *Runtime) buildPlan(inst runtime.Instance) (*plan, error) {
	if !nameRe.MatchString(inst.Name) {
		return nil, invalid("name: %q is not a valid VM name (letters, digits, '.', '_', '-', at most 63)", inst.Name)
	}
	if inst.UID == "" {
		return nil, invalid("uid: is empty")
	}
	spec := inst.Spec
	vm := spec.GetVm()
	if vm == nil {
		return nil, invalid("spec.vm: is required for a VM workload")
	}
	p := &plan{}
	if err := r.planMachine(spec, p); err != nil {
		return nil, err
	}
	if err := r.planDisks(inst.Name, vm, p); err != nil {
		return nil, err
	}
	if err := r.planBoot(vm, p); err != nil {
		return nil, err
	}
	if err := r.planNets(inst.UID, vm, p); err != nil {
		return nil, err
	}
	if err := planSeed(inst, p); err != nil {
		return nil, err
	}

	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(vm)
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, err, "spec.vm: encode")
	}
	sum := sha256.Sum256(b)
	p.hash = fmt.Sprintf("%x", sum[:8])
	return p, nil
}

// planMachine resolves vCPUs, memory, accelerator, stop timeout and the
// disk retain policy.
func (r *Runtime) planMachine(spec *persysv1.WorkloadSpec, p *plan) error {
	vm := spec.GetVm()
	p.vcpus = int(vm.GetVcpus())
	if p.vcpus == 0 {
		p.vcpus = 1
	}
	if p.vcpus < 1 || p.vcpus > MaxVCPUs {
		return invalid("spec.vm.vcpus: %d is outside 1..%d", vm.GetVcpus(), MaxVCPUs)
	}
	mem := vm.GetMemoryBytes()
	if mem == 0 {
		mem = spec.GetResources().GetMemoryBytes()
	}
	if mem == 0 {
		mem = DefaultMemory
	}
	if mem < MinMemoryBytes || mem > MaxMemoryBytes {
		return invalid("spec.vm.memoryBytes: %d is outside %d..%d", mem, int64(MinMemoryBytes), int64(MaxMemoryBytes))
	}
	p.memMiB = (mem + (1<<20 - 1)) >> 20

	switch vm.GetAccel() {
	case "":
		p.accel = r.accel
	case "kvm", "tcg":
		if vm.GetAccel() == "kvm" && r.accel != "kvm" {
			return invalid("spec.vm.accel: kvm is required but node %s runs VMs with %s", r.cfg.NodeID, r.accel)
		}
		p.accel = vm.GetAccel()
	default:
		return invalid("spec.vm.accel: %q must be \"\", \"kvm\" or \"tcg\"", vm.GetAccel())
	}

	if t := vm.GetStopTimeoutSeconds(); t < 0 || t > 3600 {
		return invalid("spec.vm.stopTimeoutSeconds: %d is outside 0..3600", t)
	} else if t == 0 {
		p.stopTimeout = defaultStop
	} else {
		p.stopTimeout = time.Duration(t) * time.Second
	}
	p.retain = vm.GetDiskRetain() == persysv1.RetainPolicy_RETAIN_POLICY_RETAIN
	return nil
}

// planBoot resolves kernelBoot's files from their pool; without it the VM
// boots from its disks, so it needs one.
func (r *Runtime) planBoot(vm *persysv1.VMSpec, p *plan) error {
	kb := vm.GetKernelBoot()
	if kb == nil {
		if len(p.disks) == 0 {
			return invalid("spec.vm.disks: a VM needs a disk, an ISO or kernelBoot to boot from")
		}
		return nil
	}
	if kb.GetKernel() == "" {
		return invalid("spec.vm.kernelBoot.kernel: is required")
	}
	k, err := r.poolFile("spec.vm.kernelBoot.kernel", kb.GetPool(), kb.GetKernel())
	if err != nil {
		return err
	}
	p.kernel = k
	if kb.GetInitrd() != "" {
		i, err := r.poolFile("spec.vm.kernelBoot.initrd", kb.GetPool(), kb.GetInitrd())
		if err != nil {
			return err
		}
		p.initrd = i
	}
	if len(kb.GetCmdline()) > MaxCmdlineBytes || strings.ContainsAny(kb.GetCmdline(), "\x00\n\r") {
		return invalid("spec.vm.kernelBoot.cmdline: must be one line of at most %d bytes", MaxCmdlineBytes)
	}
	p.cmdline = kb.GetCmdline()
	return nil
}

// planSeed checks cloud-init and login and builds the seed's input, the
// login password included.
func planSeed(inst runtime.Instance, p *plan) error {
	vm := inst.Spec.GetVm()
	if err := cloudinit.Validate(vm.GetCloudInit(), vm.GetLogin()); err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "%s", strings.TrimPrefix(err.Error(), cloudinit.ErrInvalid.Error()+": "))
	}
	p.seed = cloudinit.Input{
		CloudInit:  vm.GetCloudInit(),
		Login:      vm.GetLogin(),
		InstanceID: cloudinit.InstanceID(inst.UID, inst.Revision),
		Hostname:   cloudinit.Hostname(inst.Name),
		Metadata:   vm.GetMetadata(),
	}
	if s := vm.GetLogin().GetPasswordSecret(); s != "" {
		pw, err := inst.SecretValue(s, "password")
		if err != nil {
			return err
		}
		p.seed.Password = string(pw)
	}
	return nil
}

func (r *Runtime) planDisks(name string, vm *persysv1.VMSpec, p *plan) error {
	disks := vm.GetDisks()
	if len(disks) > MaxDisks {
		return invalid("spec.vm.disks: %d disks, more than the limit of %d", len(disks), MaxDisks)
	}
	seen := map[string]bool{}
	boots := map[int32]string{}
	isos := 0
	for i, d := range disks {
		f := fmt.Sprintf("spec.vm.disks[%d]", i)
		if !diskNameRe.MatchString(d.GetName()) {
			return invalid("%s.name: %q must be lower-case letters, digits and '-', at most 63", f, d.GetName())
		}
		if seen[d.GetName()] {
			return invalid("%s.name: %q is used twice", f, d.GetName())
		}
		seen[d.GetName()] = true
		if d.GetBootIndex() < 0 || d.GetBootIndex() > 100 {
			return invalid("%s.bootIndex: %d is outside 0..100", f, d.GetBootIndex())
		}
		if bi := d.GetBootIndex(); bi > 0 {
			if other, ok := boots[bi]; ok {
				return invalid("%s.bootIndex: %d is already used by disk %q", f, bi, other)
			}
			boots[bi] = d.GetName()
		}
		if d.GetSizeBytes() < 0 || d.GetSizeBytes() > MaxDiskBytes {
			return invalid("%s.sizeBytes: %d is outside 0..%d", f, d.GetSizeBytes(), int64(MaxDiskBytes))
		}
		dp := diskPlan{Name: d.GetName(), BootIndex: int(d.GetBootIndex()), Size: d.GetSizeBytes()}
		switch {
		case d.GetIso() != "":
			if d.GetBaseImage() != "" || d.GetSizeBytes() != 0 || d.GetFullCopy() {
				return invalid("%s.iso: excludes baseImage, sizeBytes and fullCopy", f)
			}
			isos++
			if isos > MaxISOs {
				return invalid("%s.iso: at most %d ISO disks", f, MaxISOs)
			}
			path, err := r.poolFile(f+".iso", d.GetPool(), d.GetIso())
			if err != nil {
				return err
			}
			dp.Kind, dp.Path = diskISO, path
		case d.GetBaseImage() != "":
			base, err := r.poolFile(f+".baseImage", d.GetPool(), d.GetBaseImage())
			if err != nil {
				return err
			}
			dp.Kind, dp.Base = diskOverlay, base
			if d.GetFullCopy() {
				dp.Kind = diskCopy
			}
		default:
			if d.GetFullCopy() {
				return invalid("%s.fullCopy: needs baseImage", f)
			}
			if d.GetSizeBytes() == 0 {
				return invalid("%s.sizeBytes: a blank disk needs a size", f)
			}
			if _, err := r.poolFile(f+".pool", d.GetPool(), ""); err != nil {
				return err
			}
			dp.Kind = diskBlank
		}
		if dp.Kind != diskISO {
			dp.Path = filepath.Join(r.diskDir(d.GetPool(), name), d.GetName()+".qcow2")
		}
		p.disks = append(p.disks, dp)
	}
	return nil
}

func (r *Runtime) planNets(uid string, vm *persysv1.VMSpec, p *plan) error {
	nets := vm.GetNetworks()
	if len(nets) > MaxNetworks {
		return invalid("spec.vm.networks: %d networks, more than the limit of %d", len(nets), MaxNetworks)
	}
	if len(nets) == 0 {
		nets = []*persysv1.VMNetwork{{Mode: "user"}}
	}
	hostPorts := map[string]bool{}
	for i, n := range nets {
		f := fmt.Sprintf("spec.vm.networks[%d]", i)
		np := netPlan{Mode: n.GetMode()}
		if np.Mode == "" {
			np.Mode = "user"
		}
		switch np.Mode {
		case "user":
			if n.GetBridge() != "" {
				return invalid("%s.bridge: only for mode bridge", f)
			}
		case "bridge":
			if !bridgeRe.MatchString(n.GetBridge()) {
				return invalid("%s.bridge: %q is not a valid bridge name", f, n.GetBridge())
			}
			if len(n.GetPortForwards()) > 0 {
				return invalid("%s.portForwards: only for mode user", f)
			}
			np.Bridge = n.GetBridge()
		default:
			return invalid("%s.mode: %q must be \"user\" or \"bridge\"", f, n.GetMode())
		}
		if m := n.GetMac(); m != "" {
			hw, err := net.ParseMAC(m)
			if err != nil || len(hw) != 6 {
				return invalid("%s.mac: %q is not a MAC address", f, m)
			}
			if hw[0]&1 == 1 {
				return invalid("%s.mac: %q is a multicast address", f, m)
			}
			np.MAC = hw.String()
		} else {
			np.MAC = deriveMAC(uid, i)
		}
		if len(n.GetPortForwards()) > MaxPortForwards {
			return invalid("%s.portForwards: more than %d", f, MaxPortForwards)
		}
		for j, pf := range n.GetPortForwards() {
			ff := fmt.Sprintf("%s.portForwards[%d]", f, j)
			fw := forward{Proto: pf.GetProtocol(), HostIP: pf.GetHostIp(), HostPort: pf.GetHostPort(), GuestPort: pf.GetGuestPort()}
			if fw.Proto == "" {
				fw.Proto = "tcp"
			}
			if fw.Proto != "tcp" && fw.Proto != "udp" {
				return invalid("%s.protocol: %q must be tcp or udp", ff, pf.GetProtocol())
			}
			if fw.HostIP == "" {
				fw.HostIP = "127.0.0.1"
			}
			if ip := net.ParseIP(fw.HostIP); ip == nil || ip.To4() == nil {
				return invalid("%s.hostIp: %q is not an IPv4 address", ff, pf.GetHostIp())
			}
			if fw.HostPort == 0 || fw.HostPort > 65535 {
				return invalid("%s.hostPort: %d is outside 1..65535", ff, pf.GetHostPort())
			}
			if fw.GuestPort == 0 || fw.GuestPort > 65535 {
				return invalid("%s.guestPort: %d is outside 1..65535", ff, pf.GetGuestPort())
			}
			key := fmt.Sprintf("%s/%s:%d", fw.Proto, fw.HostIP, fw.HostPort)
			if hostPorts[key] {
				return invalid("%s.hostPort: %s is forwarded twice", ff, key)
			}
			hostPorts[key] = true
			np.Forwards = append(np.Forwards, fw)
		}
		p.nets = append(p.nets, np)
	}
	return nil
}

// diskDir is the folder of a workload's disks in a pool:
// <pool>/persys[/<node>][/<cluster>]/<workload>, with the node id and the
// cluster id (cut to 12 characters) when the runtime has them, so agents
// sharing a pool folder on one host (a VM moving between them, or nodes
// of one id in two clusters) never share disk files.
func (r *Runtime) diskDir(pool, name string) string {
	dir := filepath.Join(r.cfg.Pools[pool], "persys")
	if r.cfg.NodeID != "" {
		dir = filepath.Join(dir, r.cfg.NodeID)
	}
	if c := r.cfg.Cluster.Short(); c != "" {
		dir = filepath.Join(dir, c)
	}
	return filepath.Join(dir, name)
}

// deriveMAC returns a stable locally administered unicast MAC for the
// index-th NIC of the workload uid.
func deriveMAC(uid string, index int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", uid, index)))
	hw := net.HardwareAddr(sum[:6])
	hw[0] = (hw[0] &^ 0x01) | 0x02
	return hw.String()
}

// qemuArgs is the QEMU command line of the plan, with files in state dir sd.
func (r *Runtime) qemuArgs(name string, p *plan, sd string, seedISO string) ([]string, error) {
	for _, s := range []string{filepath.Join(sd, qmpSock), filepath.Join(sd, qgaSock)} {
		if len(s) > maxUnixSocket {
			return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "socket path %s is longer than %d bytes: use a shorter state directory", s, maxUnixSocket)
		}
	}
	a := []string{
		"-name", "guest=" + name + ",debug-threads=off",
		"-machine", "pc",
		"-accel", accelArg(p.accel),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-m", fmt.Sprintf("%dM", p.memMiB),
		"-smp", strconv.Itoa(p.vcpus),
		"-chardev", "file,id=serial0,path=" + escapeOpt(filepath.Join(sd, serialLog)) + ",append=on",
		"-serial", "chardev:serial0",
		"-qmp", "unix:" + escapeOpt(filepath.Join(sd, qmpSock)) + ",server=on,wait=off",
		"-chardev", "socket,id=qga0,path=" + escapeOpt(filepath.Join(sd, qgaSock)) + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser0",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
		"-pidfile", filepath.Join(sd, pidFile),
		"-daemonize",
		// A guest reboot (and so a kernel panic with panic=N) ends QEMU:
		// see boot.go.
		"-no-reboot",
	}
	if p.accel == "kvm" {
		a = append(a, "-cpu", "host")
	}
	if p.kernel != "" {
		a = append(a, "-kernel", p.kernel)
		if p.initrd != "" {
			a = append(a, "-initrd", p.initrd)
		}
		a = append(a, "-append", withPanicSetting(p.cmdline))
	}
	ide := []string{"bus=ide.0,unit=0", "bus=ide.0,unit=1", "bus=ide.1,unit=1"}
	for _, d := range p.disks {
		id := "disk-" + d.Name
		boot := ""
		if d.BootIndex > 0 {
			boot = ",bootindex=" + strconv.Itoa(d.BootIndex)
		}
		if d.Kind == diskISO {
			a = append(a, "-drive", "file="+escapeOpt(d.Path)+",if=none,id="+id+",media=cdrom,format=raw,readonly=on",
				"-device", "ide-cd,"+ide[0]+",drive="+id+boot)
			ide = ide[1:]
			continue
		}
		a = append(a, "-drive", "file="+escapeOpt(d.Path)+",if=none,id="+id+",format=qcow2,discard=unmap",
			"-device", "virtio-blk-pci,drive="+id+",serial="+d.Name+boot)
	}
	if seedISO != "" {
		a = append(a, "-drive", "file="+escapeOpt(seedISO)+",if=none,id=cidata,media=cdrom,format=raw,readonly=on",
			"-device", "ide-cd,bus=ide.1,unit=0,drive=cidata")
	}
	for i, n := range p.nets {
		id := fmt.Sprintf("net%d", i)
		switch n.Mode {
		case "user":
			nd := "user,id=" + id
			for _, f := range n.Forwards {
				nd += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", f.Proto, f.HostIP, f.HostPort, f.GuestPort)
			}
			a = append(a, "-netdev", nd)
		case "bridge":
			a = append(a, "-netdev", "bridge,id="+id+",br="+n.Bridge)
		}
		a = append(a, "-device", "virtio-net-pci,netdev="+id+",mac="+n.MAC)
	}
	return a, nil
}

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// modeAddresses are the guest addresses known from the network modes alone:
// QEMU user networking always gives the guest 10.0.2.15.
func modeAddresses(p *plan) []string {
	for _, n := range p.nets {
		if n.Mode == "user" {
			return []string{"10.0.2.15"}
		}
	}
	return nil
}

var errNoRecord = errors.New("no VM record")

// tcgCacheMiB caps TCG's translation cache. QEMU's default (up to 1 GiB on
// 64-bit hosts) makes the process grow far beyond the guest's memory,
// which the node's accounting (guest memory plus a fixed overhead) would
// not see; a small guest runs as fast with 64 MiB.
const tcgCacheMiB = 64

// accelArg is the -accel value for the accelerator.
func accelArg(accel string) string {
	if accel == "tcg" {
		return fmt.Sprintf("tcg,tb-size=%d", tcgCacheMiB)
	}
	return accel
}
