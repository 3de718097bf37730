package manifest

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/cloudinit"
)

// Compose describes a Docker Compose application run as one workload:
// exactly one of Inline (compose YAML) and Git.
type Compose struct {
	Inline string            `json:"inline,omitempty"`
	Git    *GitSource        `json:"git,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// VolumeRetain is delete (the default: down removes the project's named
	// volumes) or retain.
	VolumeRetain string `json:"volumeRetain,omitempty"`
}

// GitSource is a compose file in a Git repository at a ref.
type GitSource struct {
	URL               string `json:"url"`
	Ref               string `json:"ref,omitempty"`
	Path              string `json:"path,omitempty"`
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
	// PollIntervalSeconds > 0 makes the scheduler follow the ref.
	PollIntervalSeconds int64 `json:"pollIntervalSeconds,omitempty"`
}

// SecretEnv sets an environment variable from a key of a secret.
type SecretEnv struct {
	Name     string   `json:"name"`
	Secret   string   `json:"secret"`
	Key      string   `json:"key"`
	Services []string `json:"services,omitempty"`
}

// SecretFile mounts a key of a secret (or every key into a directory, when
// key is empty) read-only at an absolute path.
type SecretFile struct {
	Secret   string   `json:"secret"`
	Key      string   `json:"key,omitempty"`
	Path     string   `json:"path"`
	Services []string `json:"services,omitempty"`
}

// VM describes a virtual machine.
type VM struct {
	VCPUs              int               `json:"vcpus"`
	Memory             Quantity          `json:"memory"`
	Disks              []VMDisk          `json:"disks,omitempty"`
	Networks           []VMNetwork       `json:"networks,omitempty"`
	CloudInit          *CloudInit        `json:"cloudInit,omitempty"`
	Login              *VMLogin          `json:"login,omitempty"`
	KernelBoot         *KernelBoot       `json:"kernelBoot,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
	Accel              string            `json:"accel,omitempty"`
	StopTimeoutSeconds int               `json:"stopTimeoutSeconds,omitempty"`
	DiskRetain         string            `json:"diskRetain,omitempty"`
}

// VMDisk is a disk created in a storage pool, or an ISO from one.
type VMDisk struct {
	Name      string   `json:"name"`
	Pool      string   `json:"pool"`
	BaseImage string   `json:"baseImage,omitempty"`
	FullCopy  bool     `json:"fullCopy,omitempty"`
	Size      Quantity `json:"size,omitempty"`
	ISO       string   `json:"iso,omitempty"`
	BootIndex int      `json:"bootIndex,omitempty"`
}

// VMNetwork is user-mode networking with port forwards, or a bridge.
type VMNetwork struct {
	Mode         string          `json:"mode,omitempty"`
	Bridge       string          `json:"bridge,omitempty"`
	MAC          string          `json:"mac,omitempty"`
	PortForwards []VMPortForward `json:"portForwards,omitempty"`
}

// VMPortForward forwards a host port to a guest port.
type VMPortForward struct {
	HostPort  int    `json:"hostPort"`
	GuestPort int    `json:"guestPort"`
	Protocol  string `json:"protocol,omitempty"`
	HostIP    string `json:"hostIP,omitempty"`
}

// CloudInit is the NoCloud seed's content.
type CloudInit struct {
	UserData      string `json:"userData,omitempty"`
	MetaData      string `json:"metaData,omitempty"`
	NetworkConfig string `json:"networkConfig,omitempty"`
	VendorData    string `json:"vendorData,omitempty"`
}

// VMLogin is the guest's login user.
type VMLogin struct {
	User              string   `json:"user"`
	PasswordHash      string   `json:"passwordHash,omitempty"`
	GeneratePassword  bool     `json:"generatePassword,omitempty"`
	PasswordSecret    string   `json:"passwordSecret,omitempty"`
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitempty"`
}

// KernelBoot boots a kernel and initrd from a pool directly.
type KernelBoot struct {
	Pool    string `json:"pool"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// Limits of compose and VM specs.
const (
	// MaxComposeInline bounds inline compose YAML (the manifest as a whole
	// is bounded by MaxSize too).
	MaxComposeInline = 512 << 10
	// MaxCloudInitPart bounds each cloud-init document.
	MaxCloudInitPart = 64 << 10
	MaxDisks         = 16
	MaxNetworks      = 8
	MaxSecretRefs    = 64
	MaxVCPUs         = 64
	// VMMemoryOverhead is what a QEMU process needs beyond guest memory;
	// the scheduler accounts it against the node. Measured under TCG with
	// its translation cache capped at 64 MiB: about 110 MiB.
	VMMemoryOverhead = 128 << 20
	// MinVMMemory is the smallest guest memory accepted.
	MinVMMemory = 32 << 20
)

var (
	// poolFileRE is a file name inside a pool: no directories, no dot files.
	poolFileRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	macRE       = regexp.MustCompile(`^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$`)
	gitURLRE    = regexp.MustCompile(`^(https?|git|file|ssh)://`)
	bridgeRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
	secretKeyRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// Words of the retain policies.
const (
	RetainDelete = "delete"
	RetainRetain = "retain"
)

var retainNames = map[persysv1.RetainPolicy]string{
	persysv1.RetainPolicy_RETAIN_POLICY_UNSPECIFIED: "",
	persysv1.RetainPolicy_RETAIN_POLICY_DELETE:      RetainDelete,
	persysv1.RetainPolicy_RETAIN_POLICY_RETAIN:      RetainRetain,
}

func validateRetain(c *collector, field, v string) {
	switch v {
	case "", RetainDelete, RetainRetain:
	default:
		c.add(field, "must be %s or %s, got %q", RetainDelete, RetainRetain, v)
	}
}

func validateCompose(c *collector, field string, cp *Compose) {
	switch {
	case cp.Inline == "" && cp.Git == nil:
		c.add(field, "needs inline (compose YAML) or git")
	case cp.Inline != "" && cp.Git != nil:
		c.add(field, "give inline or git, not both")
	}
	if len(cp.Inline) > MaxComposeInline {
		c.add(field+".inline", "is %d bytes, larger than the limit of %d bytes", len(cp.Inline), MaxComposeInline)
	}
	noNUL(c, field+".inline", cp.Inline)
	if g := cp.Git; g != nil {
		gf := field + ".git"
		switch {
		case g.URL == "":
			c.add(gf+".url", "required")
		case len(g.URL) > 2048:
			c.add(gf+".url", "must be at most 2048 characters")
		case !gitURLRE.MatchString(g.URL):
			c.add(gf+".url", "must be an http, https, git, ssh or file URL")
		case strings.ContainsAny(g.URL, " \t\n\x00"):
			c.add(gf+".url", "must not contain spaces or control characters")
		}
		if len(g.Ref) > 255 || strings.ContainsAny(g.Ref, " \t\n\x00~^:?*[\\") || strings.Contains(g.Ref, "..") {
			c.add(gf+".ref", "must be a branch, tag or commit name")
		}
		if g.Path != "" {
			clean := path.Clean(g.Path)
			if path.IsAbs(g.Path) || clean == ".." || strings.HasPrefix(clean, "../") || strings.IndexByte(g.Path, 0) >= 0 {
				c.add(gf+".path", "must be a relative path inside the repository")
			}
		}
		if g.CredentialsSecret != "" {
			validateName(c, gf+".credentialsSecret", g.CredentialsSecret)
		}
		if g.PollIntervalSeconds < 0 || (g.PollIntervalSeconds > 0 && g.PollIntervalSeconds < 10) {
			c.add(gf+".pollIntervalSeconds", "must be 0 (no polling) or at least 10")
		}
	}
	validateEnv(c, field+".env", cp.Env)
	validateRetain(c, field+".volumeRetain", cp.VolumeRetain)
}

func validateSecretRefs(c *collector, s *Spec) {
	if n := len(s.SecretEnv) + len(s.SecretFiles) + len(s.ImagePullSecrets); n > MaxSecretRefs {
		c.add("spec", "at most %d secret references in all, got %d", MaxSecretRefs, n)
	}
	if s.Type == "vm" && (len(s.SecretEnv) > 0 || len(s.SecretFiles) > 0 || len(s.ImagePullSecrets) > 0) {
		c.add("spec.secretEnv", "secretEnv, secretFiles and imagePullSecrets apply to container and compose workloads")
	}
	names := map[string]int{}
	for i, e := range s.SecretEnv {
		f := index("spec.secretEnv", i)
		if !envNameRE.MatchString(e.Name) {
			c.add(f+".name", "required, must match [A-Za-z_][A-Za-z0-9_]*")
		} else if j, dup := names[e.Name]; dup {
			c.add(f+".name", "already set by %s", index("spec.secretEnv", j))
		} else {
			names[e.Name] = i
		}
		validateName(c, f+".secret", e.Secret)
		validateSecretKey(c, f+".key", e.Key, true)
		validateServices(c, f+".services", s.Type, e.Services)
	}
	paths := map[string]int{}
	for i, sf := range s.SecretFiles {
		f := index("spec.secretFiles", i)
		validateName(c, f+".secret", sf.Secret)
		validateSecretKey(c, f+".key", sf.Key, false)
		if err := absPath(sf.Path); err != nil {
			c.add(f+".path", "%v", err)
		} else if path.Clean(sf.Path) == "/" {
			c.add(f+".path", "must not be /")
		} else if j, dup := paths[path.Clean(sf.Path)]; dup {
			c.add(f+".path", "already used by %s", index("spec.secretFiles", j))
		} else {
			paths[path.Clean(sf.Path)] = i
		}
		validateServices(c, f+".services", s.Type, sf.Services)
	}
	for i, n := range s.ImagePullSecrets {
		validateName(c, index("spec.imagePullSecrets", i), n)
	}
}

func validateSecretKey(c *collector, field, key string, required bool) {
	switch {
	case key == "" && required:
		c.add(field, "required")
	case key == "":
	case len(key) > 253 || !secretKeyRE.MatchString(key):
		c.add(field, "must be a key name: letters, digits, '.', '_' or '-'")
	}
}

func validateServices(c *collector, field, typ string, services []string) {
	if len(services) > 0 && typ != "compose" {
		c.add(field, "applies to compose workloads only")
	}
	for i, s := range services {
		if s == "" || len(s) > 63 || strings.ContainsAny(s, " /\t\n\x00") {
			c.add(index(field, i), "must be a service name")
		}
	}
}

// validateVM checks a VM spec one sub-object at a time, each in its own
// function (as Kubernetes' validation does), so that a field group's rules
// read and change in one place.
func validateVM(c *collector, field string, vm *VM) {
	validateVMSize(c, field, vm)
	validateRetain(c, field+".diskRetain", vm.DiskRetain)
	validateLabels(c, field+".metadata", vm.Metadata, false)
	validateVMDisks(c, field+".disks", vm.Disks)
	validateVMNetworks(c, field+".networks", vm.Networks)
	if vm.CloudInit != nil {
		validateVMCloudInit(c, field+".cloudInit", vm.CloudInit)
	}
	if vm.Login != nil {
		validateVMLogin(c, field+".login", vm.Login)
	}
	if vm.KernelBoot != nil {
		validateVMKernelBoot(c, field+".kernelBoot", vm.KernelBoot)
	} else if !slices.ContainsFunc(vm.Disks, func(d VMDisk) bool { return d.BaseImage != "" || d.ISO != "" }) {
		c.add(field+".disks", "nothing to boot: give a disk with baseImage or iso, or kernelBoot")
	}
}

// validateVMSize checks the VM's processors, memory, accelerator and stop
// timeout.
func validateVMSize(c *collector, field string, vm *VM) {
	if vm.VCPUs < 1 || vm.VCPUs > MaxVCPUs {
		c.add(field+".vcpus", "must be between 1 and %d", MaxVCPUs)
	}
	switch mem, err := ParseBytes(string(vm.Memory)); {
	case vm.Memory == "":
		c.add(field+".memory", "required, for example 512Mi")
	case err != nil:
		c.add(field+".memory", "%v", err)
	case mem < MinVMMemory:
		c.add(field+".memory", "must be at least %s", FormatBytes(MinVMMemory))
	}
	switch vm.Accel {
	case "", "kvm", "tcg":
	default:
		c.add(field+".accel", "must be kvm or tcg (or empty for either)")
	}
	if vm.StopTimeoutSeconds < 0 || vm.StopTimeoutSeconds > 3600 {
		c.add(field+".stopTimeoutSeconds", "must be between 0 (30 s) and 3600")
	}
}

// validateVMDisks checks each disk and that names and boot indexes are
// unique.
func validateVMDisks(c *collector, field string, disks []VMDisk) {
	if len(disks) > MaxDisks {
		c.add(field, "at most %d disks, got %d", MaxDisks, len(disks))
	}
	names := map[string]int{}
	boots := map[int]int{}
	for i, d := range disks {
		f := index(field, i)
		validateVMDisk(c, f, d)
		if j, dup := names[d.Name]; dup && d.Name != "" {
			c.add(f+".name", "already used by %s", index(field, j))
		} else {
			names[d.Name] = i
		}
		if d.BootIndex <= 0 || d.BootIndex > 64 {
			continue
		}
		if j, dup := boots[d.BootIndex]; dup {
			c.add(f+".bootIndex", "already used by %s", index(field, j))
		} else {
			boots[d.BootIndex] = i
		}
	}
}

// validateVMDisk checks one disk: a pool, and exactly one source (an ISO,
// a base image, or a size for a blank disk).
func validateVMDisk(c *collector, f string, d VMDisk) {
	validateName(c, f+".name", d.Name)
	validateName(c, f+".pool", d.Pool)
	validateQuantity(c, f+".size", d.Size, ParseBytes)
	switch {
	case d.ISO != "" && (d.BaseImage != "" || d.Size != "" || d.FullCopy):
		c.add(f+".iso", "an ISO disk takes no baseImage, size or fullCopy")
	case d.ISO != "":
		poolFile(c, f+".iso", d.ISO)
	case d.BaseImage != "":
		poolFile(c, f+".baseImage", d.BaseImage)
	case d.Size == "":
		c.add(f+".size", "required for a blank disk (or give baseImage or iso)")
	case d.FullCopy:
		c.add(f+".fullCopy", "needs baseImage")
	}
	if d.BootIndex < 0 || d.BootIndex > 64 {
		c.add(f+".bootIndex", "must be between 0 (not bootable) and 64")
	}
}

// validateVMNetworks checks each network and that no host port is
// forwarded twice across them.
func validateVMNetworks(c *collector, field string, networks []VMNetwork) {
	if len(networks) > MaxNetworks {
		c.add(field, "at most %d networks, got %d", MaxNetworks, len(networks))
	}
	hostPorts := map[string]string{}
	for i, n := range networks {
		f := index(field, i)
		validateVMNetwork(c, f, n)
		for j, pf := range n.PortForwards {
			pff := index(f+".portForwards", j)
			proto := validatePortForward(c, pff, pf)
			key := fmt.Sprintf("%s|%d|%s", pf.HostIP, pf.HostPort, proto)
			if prev, dup := hostPorts[key]; dup {
				c.add(pff+".hostPort", "already forwarded by %s", prev)
			} else {
				hostPorts[key] = pff
			}
		}
	}
}

// validateVMNetwork checks one network's mode, bridge, MAC and forward
// count.
func validateVMNetwork(c *collector, f string, n VMNetwork) {
	switch n.Mode {
	case "", "user":
		if n.Bridge != "" {
			c.add(f+".bridge", "only with mode bridge")
		}
	case "bridge":
		if !bridgeRE.MatchString(n.Bridge) {
			c.add(f+".bridge", "required with mode bridge, a Linux interface name")
		}
		if len(n.PortForwards) > 0 {
			c.add(f+".portForwards", "only with mode user")
		}
	default:
		c.add(f+".mode", "must be user or bridge")
	}
	if n.MAC != "" && !macRE.MatchString(n.MAC) {
		c.add(f+".mac", "must be six hex bytes separated by ':'")
	}
	if len(n.PortForwards) > MaxPorts {
		c.add(f+".portForwards", "at most %d forwards", MaxPorts)
	}
}

// validatePortForward checks one forward and returns its protocol with
// the default applied.
func validatePortForward(c *collector, f string, pf VMPortForward) string {
	if pf.HostPort < 1 || pf.HostPort > 65535 {
		c.add(f+".hostPort", "must be between 1 and 65535")
	}
	if pf.GuestPort < 1 || pf.GuestPort > 65535 {
		c.add(f+".guestPort", "must be between 1 and 65535")
	}
	proto := pf.Protocol
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp":
	default:
		c.add(f+".protocol", "must be tcp or udp")
	}
	if pf.HostIP != "" {
		if a, err := netip.ParseAddr(pf.HostIP); err != nil || a.Zone() != "" {
			c.add(f+".hostIP", "must be an IP address without zone")
		}
	}
	return proto
}

// validateVMCloudInit bounds each cloud-init part.
func validateVMCloudInit(c *collector, f string, ci *CloudInit) {
	for _, part := range []struct{ name, v string }{
		{"userData", ci.UserData}, {"metaData", ci.MetaData},
		{"networkConfig", ci.NetworkConfig}, {"vendorData", ci.VendorData},
	} {
		if len(part.v) > MaxCloudInitPart {
			c.add(f+"."+part.name, "is %d bytes, larger than the limit of %d bytes", len(part.v), MaxCloudInitPart)
		}
		noNUL(c, f+"."+part.name, part.v)
	}
}

// validateVMLogin applies cloudinit's login rules, the one definition the
// scheduler and the qemu runtime apply too.
func validateVMLogin(c *collector, f string, l *VMLogin) {
	err := cloudinit.ValidateLogin(&persysv1.VMLogin{User: l.User, PasswordHash: l.PasswordHash,
		GeneratePassword: l.GeneratePassword, PasswordSecret: l.PasswordSecret, SshAuthorizedKeys: l.SSHAuthorizedKeys})
	if fe := (*cloudinit.FieldError)(nil); errors.As(err, &fe) {
		c.add(f+strings.TrimPrefix(fe.Field, cloudinit.FieldLogin), "%s", fe.Message)
	}
}

// validateVMKernelBoot checks a direct kernel boot's files and command
// line.
func validateVMKernelBoot(c *collector, f string, kb *KernelBoot) {
	validateName(c, f+".pool", kb.Pool)
	if kb.Kernel == "" {
		c.add(f+".kernel", "required, a file in the pool")
	} else {
		poolFile(c, f+".kernel", kb.Kernel)
	}
	if kb.Initrd != "" {
		poolFile(c, f+".initrd", kb.Initrd)
	}
	if len(kb.Cmdline) > 4096 || strings.ContainsAny(kb.Cmdline, "\n\x00") {
		c.add(f+".cmdline", "must be one line of at most 4096 characters")
	}
}

func poolFile(c *collector, field, name string) {
	if len(name) > 255 || !poolFileRE.MatchString(name) {
		c.add(field, "must be a file name in the pool (letters, digits, '.', '_', '+', '-'; no '/')")
	}
}

// vmResources derives what a VM reserves when the manifest gives no
// resources: its vCPUs and guest memory plus QEMU's overhead. Its disks are
// accounted against their storage pools (PoolDemand), not the node's disk.
func vmResources(vm *persysv1.VMSpec) *persysv1.Resources {
	return &persysv1.Resources{
		CpuMillis:   int64(vm.GetVcpus()) * 1000,
		MemoryBytes: vm.GetMemoryBytes() + VMMemoryOverhead,
	}
}

// PoolDemand sums, per storage pool, the bytes a VM's disks take there.
func PoolDemand(spec *persysv1.WorkloadSpec) map[string]int64 {
	vm := spec.GetVm()
	if vm == nil {
		return nil
	}
	out := map[string]int64{}
	for _, d := range vm.GetDisks() {
		out[d.GetPool()] += d.GetSizeBytes()
	}
	if kb := vm.GetKernelBoot(); kb != nil {
		if _, ok := out[kb.GetPool()]; !ok {
			out[kb.GetPool()] = 0
		}
	}
	return out
}

func composeToProto(cp *Compose) *persysv1.ComposeSpec {
	out := &persysv1.ComposeSpec{Inline: cp.Inline, Env: copyMap(cp.Env)}
	for p, name := range retainNames {
		if name != "" && name == cp.VolumeRetain {
			out.VolumeRetain = p
		}
	}
	if g := cp.Git; g != nil {
		out.Git = &persysv1.GitSource{Url: g.URL, Ref: g.Ref, Path: g.Path,
			CredentialsSecret: g.CredentialsSecret, PollIntervalSeconds: g.PollIntervalSeconds}
	}
	return out
}

func composeFromProto(pc *persysv1.ComposeSpec) *Compose {
	out := &Compose{Inline: pc.GetInline(), Env: copyMap(pc.GetEnv()),
		VolumeRetain: enumWord(retainNames, pc.GetVolumeRetain())}
	if g := pc.GetGit(); g != nil {
		out.Git = &GitSource{URL: g.GetUrl(), Ref: g.GetRef(), Path: g.GetPath(),
			CredentialsSecret: g.GetCredentialsSecret(), PollIntervalSeconds: g.GetPollIntervalSeconds()}
	}
	return out
}

func vmToProto(vm *VM) *persysv1.VMSpec {
	out := &persysv1.VMSpec{
		Vcpus:              int32(min(max(vm.VCPUs, 0), MaxVCPUs)),
		MemoryBytes:        parseOrZero(ParseBytes, vm.Memory),
		Metadata:           copyMap(vm.Metadata),
		Accel:              vm.Accel,
		StopTimeoutSeconds: int32(min(max(vm.StopTimeoutSeconds, 0), 3600)),
	}
	for p, name := range retainNames {
		if name != "" && name == vm.DiskRetain {
			out.DiskRetain = p
		}
	}
	for _, d := range vm.Disks {
		out.Disks = append(out.Disks, &persysv1.VMDisk{Name: d.Name, Pool: d.Pool, BaseImage: d.BaseImage,
			FullCopy: d.FullCopy, SizeBytes: parseOrZero(ParseBytes, d.Size), Iso: d.ISO,
			BootIndex: int32(min(max(d.BootIndex, 0), 64))})
	}
	for _, n := range vm.Networks {
		pn := &persysv1.VMNetwork{Mode: n.Mode, Bridge: n.Bridge, Mac: strings.ToLower(n.MAC)}
		for _, pf := range n.PortForwards {
			pn.PortForwards = append(pn.PortForwards, &persysv1.VMPortForward{
				HostPort: clampPort(pf.HostPort), GuestPort: clampPort(pf.GuestPort),
				Protocol: pf.Protocol, HostIp: pf.HostIP})
		}
		out.Networks = append(out.Networks, pn)
	}
	if ci := vm.CloudInit; ci != nil {
		out.CloudInit = &persysv1.CloudInit{UserData: ci.UserData, MetaData: ci.MetaData,
			NetworkConfig: ci.NetworkConfig, VendorData: ci.VendorData}
	}
	if l := vm.Login; l != nil {
		out.Login = &persysv1.VMLogin{User: l.User, PasswordHash: l.PasswordHash,
			GeneratePassword: l.GeneratePassword, PasswordSecret: l.PasswordSecret,
			SshAuthorizedKeys: copySlice(l.SSHAuthorizedKeys)}
	}
	if kb := vm.KernelBoot; kb != nil {
		out.KernelBoot = &persysv1.VMKernelBoot{Pool: kb.Pool, Kernel: kb.Kernel, Initrd: kb.Initrd, Cmdline: kb.Cmdline}
	}
	return out
}

func vmFromProto(pv *persysv1.VMSpec) *VM {
	out := &VM{
		VCPUs:              int(pv.GetVcpus()),
		Metadata:           copyMap(pv.GetMetadata()),
		Accel:              pv.GetAccel(),
		StopTimeoutSeconds: int(pv.GetStopTimeoutSeconds()),
		DiskRetain:         enumWord(retainNames, pv.GetDiskRetain()),
	}
	if pv.GetMemoryBytes() != 0 {
		out.Memory = Quantity(FormatBytes(pv.GetMemoryBytes()))
	}
	for _, d := range pv.GetDisks() {
		vd := VMDisk{Name: d.GetName(), Pool: d.GetPool(), BaseImage: d.GetBaseImage(),
			FullCopy: d.GetFullCopy(), ISO: d.GetIso(), BootIndex: int(d.GetBootIndex())}
		if d.GetSizeBytes() != 0 {
			vd.Size = Quantity(FormatBytes(d.GetSizeBytes()))
		}
		out.Disks = append(out.Disks, vd)
	}
	for _, n := range pv.GetNetworks() {
		vn := VMNetwork{Mode: n.GetMode(), Bridge: n.GetBridge(), MAC: n.GetMac()}
		for _, pf := range n.GetPortForwards() {
			vn.PortForwards = append(vn.PortForwards, VMPortForward{HostPort: int(pf.GetHostPort()),
				GuestPort: int(pf.GetGuestPort()), Protocol: pf.GetProtocol(), HostIP: pf.GetHostIp()})
		}
		out.Networks = append(out.Networks, vn)
	}
	if ci := pv.GetCloudInit(); ci != nil {
		out.CloudInit = &CloudInit{UserData: ci.GetUserData(), MetaData: ci.GetMetaData(),
			NetworkConfig: ci.GetNetworkConfig(), VendorData: ci.GetVendorData()}
	}
	if l := pv.GetLogin(); l != nil {
		out.Login = &VMLogin{User: l.GetUser(), PasswordHash: l.GetPasswordHash(),
			GeneratePassword: l.GetGeneratePassword(), PasswordSecret: l.GetPasswordSecret(),
			SSHAuthorizedKeys: copySlice(l.GetSshAuthorizedKeys())}
	}
	if kb := pv.GetKernelBoot(); kb != nil {
		out.KernelBoot = &KernelBoot{Pool: kb.GetPool(), Kernel: kb.GetKernel(), Initrd: kb.GetInitrd(), Cmdline: kb.GetCmdline()}
	}
	return out
}

func secretRefsToProto(s *Spec, spec *persysv1.WorkloadSpec) {
	for _, e := range s.SecretEnv {
		spec.SecretEnv = append(spec.SecretEnv, &persysv1.SecretEnv{Name: e.Name, Secret: e.Secret, Key: e.Key, Services: copySlice(e.Services)})
	}
	for _, f := range s.SecretFiles {
		spec.SecretFiles = append(spec.SecretFiles, &persysv1.SecretFile{Secret: f.Secret, Key: f.Key, Path: f.Path, Services: copySlice(f.Services)})
	}
	spec.ImagePullSecrets = copySlice(s.ImagePullSecrets)
}

func secretRefsFromProto(spec *persysv1.WorkloadSpec, s *Spec) {
	for _, e := range spec.GetSecretEnv() {
		s.SecretEnv = append(s.SecretEnv, SecretEnv{Name: e.GetName(), Secret: e.GetSecret(), Key: e.GetKey(), Services: copySlice(e.GetServices())})
	}
	for _, f := range spec.GetSecretFiles() {
		s.SecretFiles = append(s.SecretFiles, SecretFile{Secret: f.GetSecret(), Key: f.GetKey(), Path: f.GetPath(), Services: copySlice(f.GetServices())})
	}
	s.ImagePullSecrets = copySlice(spec.GetImagePullSecrets())
}
