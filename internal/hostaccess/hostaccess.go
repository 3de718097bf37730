// Package hostaccess is the one definition of what a workload asks of the
// host it runs on and what a node allows: host bind mounts, privileged
// mode (with devices, added capabilities and host namespaces) and host
// ports. It is pure: callers build Needs from a spec (the scheduler from
// the caller's manifest, the agent again from what it is told to run) and
// Policy from a node's flags, and every layer asks the same questions:
//
//   - the scheduler refuses a caller without the workloads.host
//     permission when Needs.Host() is true;
//   - placement rules out a node whose Policy does not admit the Needs
//     (POLICY_DENIED) or whose host ports conflict (PORT_CONFLICT);
//   - the agent refuses the apply again when its own Policy says no.
package hostaccess

import (
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// LowPortLimit is the first port that needs no privilege: binding a port
// below it is a host-level feature, as it is for an unprivileged process.
const LowPortLimit = 1024

// Needs is what one workload asks of its host. Field names the manifest
// field that asks, so a refusal can name it.
type Needs struct {
	// Privileged is set when the workload runs privileged or adds what
	// amounts to it (devices, capabilities, host network/PID/IPC).
	Privileged      bool
	PrivilegedField string
	// HostPaths are the host paths bound into the workload.
	HostPaths []Path
	// Ports are the host ports the workload publishes.
	Ports []Port
}

// Path is one host path a workload binds, with the field that asks.
type Path struct {
	Path  string
	Field string
}

// Port is one host port: an address ("" for every address), a number and
// a protocol ("tcp" or "udp"; "" is tcp).
type Port struct {
	HostIP   string
	Port     uint32
	Protocol string
	Field    string
}

// Proto returns the port's protocol, "tcp" when unset.
func (p Port) Proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return strings.ToLower(p.Protocol)
}

// String prints "ip:port/proto" ("*:80/tcp" for every address).
func (p Port) String() string {
	ip := p.HostIP
	if anyAddr(ip) {
		ip = "*"
	}
	return ip + ":" + strconv.FormatUint(uint64(p.Port), 10) + "/" + p.Proto()
}

// Conflicts reports whether two host ports cannot both be bound on one
// host: same number and protocol, and the same address or either on every
// address.
func (p Port) Conflicts(o Port) bool {
	if p.Port == 0 || p.Port != o.Port || p.Proto() != o.Proto() {
		return false
	}
	return anyAddr(p.HostIP) || anyAddr(o.HostIP) || p.HostIP == o.HostIP
}

func anyAddr(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

// Host reports whether the workload needs the workloads.host permission:
// privileged mode, a host path, or a host port below LowPortLimit.
func (n Needs) Host() bool {
	_, _, ok := n.HostField()
	return ok
}

// HostField names the first field that makes the workload host-level and
// what it asks for ("privileged", "host path /etc", "host port 80").
func (n Needs) HostField() (field, what string, ok bool) {
	if n.Privileged {
		return n.PrivilegedField, privilegedWhat, true
	}
	if len(n.HostPaths) > 0 {
		return n.HostPaths[0].Field, "host path " + n.HostPaths[0].Path, true
	}
	for _, p := range n.Ports {
		if p.Port > 0 && p.Port < LowPortLimit {
			return p.Field, "host port " + strconv.FormatUint(uint64(p.Port), 10) + " (below " + strconv.Itoa(LowPortLimit) + ")", true
		}
	}
	return "", "", false
}

// privilegedWhat names what Needs.Privileged stands for in messages.
const privilegedWhat = "privileged access (privileged mode, devices, added capabilities or host namespaces)"

// Policy is what a node allows (its agent's flags, default off).
type Policy struct {
	// AllowPrivileged admits privileged mode and what amounts to it.
	AllowPrivileged bool
	// AllowHostPaths are absolute, cleaned host folders under which host
	// paths are admitted. Empty: none.
	AllowHostPaths []string
}

// Denial says which field a policy refuses and why.
type Denial struct {
	Field  string
	Reason string
}

func (d Denial) Error() string { return d.Field + ": " + d.Reason }

// Admits reports whether the policy admits n; when it does not, the
// Denial names the first field it refuses.
func (p Policy) Admits(n Needs) (Denial, bool) {
	if n.Privileged && !p.AllowPrivileged {
		return Denial{Field: n.PrivilegedField, Reason: privilegedWhat + " is not allowed by the node's policy (agent flag --allow-privileged)"}, false
	}
	for _, hp := range n.HostPaths {
		if !p.AllowsPath(hp.Path) {
			return Denial{Field: hp.Field, Reason: "host path " + strconv.Quote(hp.Path) + " is not allowed by the node's policy (agent flag --allow-host-path)"}, false
		}
	}
	return Denial{}, true
}

// AllowsPath reports whether host path p lies under an allowed folder.
// Relative paths and paths that climb out with ".." are never allowed.
func (p Policy) AllowsPath(hostPath string) bool {
	if !path.IsAbs(hostPath) {
		return false
	}
	clean := path.Clean(hostPath)
	return slices.ContainsFunc(p.AllowHostPaths, func(a string) bool {
		a = path.Clean(a)
		return a == "/" || clean == a || strings.HasPrefix(clean, a+"/")
	})
}

// ValidatePolicyPath checks one --allow-host-path value: an absolute path
// that is already clean.
func ValidatePolicyPath(p string) error {
	switch {
	case p == "":
		return errString("must not be empty")
	case !path.IsAbs(p):
		return errString("must be an absolute path, got " + strconv.Quote(p))
	case path.Clean(p) != p:
		return errString("must be a clean path (no '..', '.', '//' or trailing '/'), got " + strconv.Quote(p))
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// PortRange is an inclusive range of host ports a node gives out as
// dynamic ports; the zero value is no range.
type PortRange struct {
	First, Last uint32
}

// DefaultDynamicPorts is the agent's range when its flag is not given,
// as Nomad's: above the registered ports most services fix, below the
// kernel's ephemeral range (32768-60999), so that an outgoing connection
// never holds a port the scheduler gives out.
var DefaultDynamicPorts = PortRange{First: 20000, Last: 32000}

// EphemeralPorts reads the kernel's range of ports for outgoing
// connections (ip_local_port_range); ok is false where there is none to
// read.
func EphemeralPorts() (r PortRange, ok bool) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return PortRange{}, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return PortRange{}, false
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return PortRange{}, false
	}
	return PortRange{First: uint32(lo), Last: uint32(hi)}, true
}

// Overlaps reports whether r and o share a port.
func (r PortRange) Overlaps(o PortRange) bool {
	return r != (PortRange{}) && o != (PortRange{}) && r.First <= o.Last && o.First <= r.Last
}

// String prints "first-last", or "" for no range.
func (r PortRange) String() string {
	if r == (PortRange{}) {
		return ""
	}
	return strconv.FormatUint(uint64(r.First), 10) + "-" + strconv.FormatUint(uint64(r.Last), 10)
}

// ParsePortRange reads "first-last" (inclusive, 1-65535, first <= last);
// "" and "off" are no range.
func ParsePortRange(s string) (PortRange, error) {
	if s == "" || s == "off" {
		return PortRange{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, errString("must be FIRST-LAST (for example 20000-32000) or off, got " + strconv.Quote(s))
	}
	first, err1 := strconv.ParseUint(a, 10, 16)
	last, err2 := strconv.ParseUint(b, 10, 16)
	switch {
	case err1 != nil || err2 != nil || first == 0:
		return PortRange{}, errString("ports must be numbers between 1 and 65535, got " + strconv.Quote(s))
	case first > last:
		return PortRange{}, errString("first port must not be above the last, got " + strconv.Quote(s))
	}
	return PortRange{First: uint32(first), Last: uint32(last)}, nil
}
