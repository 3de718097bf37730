package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"slices"
	"strconv"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
)

// maxUsedHostPorts bounds the host ports a node reports, lowest first, so
// that a host with thousands of sockets sends a bounded list (the
// scheduler keeps no more either).
const maxUsedHostPorts = 1024

// procNetTables are the kernel's socket tables of the agent's network
// namespace, with the protocol each lists.
var procNetTables = [...]struct{ path, proto string }{
	{"/proc/net/tcp", "tcp"}, {"/proc/net/tcp6", "tcp"},
	{"/proc/net/udp", "udp"}, {"/proc/net/udp6", "udp"},
}

// Socket states in the tables: a listening TCP socket, and an unconnected
// UDP one (which receives on its port from anyone).
const (
	tcpListen = "0A"
	udpUnconn = "07"
)

// usedHostPorts lists the host ports bound on the node by something the
// agent did not start: every listening TCP and unconnected UDP socket,
// minus the ports of the workloads it runs (their own proxies), sorted
// and bounded. Outside Linux, or without /proc, it reports none.
func (a *Agent) usedHostPorts() []*persysv1.HostPort {
	if a.cfg.SkipHostPortScan {
		return nil
	}
	var found []hostaccess.Port
	for _, t := range procNetTables {
		data, err := os.ReadFile(t.path)
		if err != nil {
			continue
		}
		found = parseProcNet(data, t.proto, found)
	}
	own := a.ledger.ports()
	found = slices.DeleteFunc(found, func(p hostaccess.Port) bool {
		return slices.ContainsFunc(own, p.Conflicts)
	})
	return portsProto(found)
}

// portsProto sorts and deduplicates ports and returns at most
// maxUsedHostPorts of them in their wire form.
func portsProto(ports []hostaccess.Port) []*persysv1.HostPort {
	slices.SortFunc(ports, func(a, b hostaccess.Port) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.HostIP, b.HostIP))
	})
	ports = slices.Compact(ports)
	if len(ports) > maxUsedHostPorts {
		ports = ports[:maxUsedHostPorts]
	}
	out := make([]*persysv1.HostPort, len(ports))
	for i, p := range ports {
		out[i] = &persysv1.HostPort{HostIp: p.HostIP, Port: p.Port, Protocol: p.Protocol}
	}
	return out
}

// parseProcNet appends to out the ports held in one /proc/net/{tcp,udp}[6]
// table: lines "sl local_address rem_address st ...", addresses as hex
// "ADDR:PORT" with the address in the kernel's byte order. A line it
// cannot read is skipped. Every address (0.0.0.0, ::) becomes "".
func parseProcNet(data []byte, proto string, out []hostaccess.Port) []hostaccess.Port {
	want := tcpListen
	if proto == "udp" {
		want = udpUnconn
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // the header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 || string(f[3]) != want {
			continue
		}
		ip, port, ok := parseSockAddr(f[1])
		if !ok || port == 0 {
			continue
		}
		p := hostaccess.Port{Port: port, Protocol: proto}
		if !ip.IsUnspecified() {
			p.HostIP = ip.Unmap().String()
		}
		out = append(out, p)
	}
	return out
}

// parseSockAddr reads "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6). The kernel prints each 32-bit word of the address as a number
// in host byte order.
func parseSockAddr(s []byte) (netip.Addr, uint32, bool) {
	i := bytes.IndexByte(s, ':')
	if i < 0 {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(string(s[i+1:]), 16, 16)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	raw, err := hex.DecodeString(string(s[:i]))
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, false
	}
	for w := 0; w < len(raw); w += 4 {
		binary.NativeEndian.PutUint32(raw[w:], binary.BigEndian.Uint32(raw[w:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return ip, uint32(port), true
}

// allocPort is a host port in the allocation record.
type allocPort struct {
	HostIP   string `json:"host_ip,omitempty"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// setPorts records the host ports spec publishes.
func (al *allocation) setPorts(spec *persysv1.WorkloadSpec) {
	needs := specaccess.FromProto(spec.GetHostAccess())
	if spec.GetHostAccess() == nil {
		needs = specaccess.Of(spec)
	}
	al.Ports = nil
	for _, p := range needs.Ports {
		al.Ports = append(al.Ports, allocPort{HostIP: p.HostIP, Port: p.Port, Protocol: p.Proto()})
	}
}

// ports lists the host ports of the recorded workloads.
func (l *ledger) ports() []hostaccess.Port {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []hostaccess.Port
	for _, e := range l.entries {
		for _, p := range e.Ports {
			out = append(out, hostaccess.Port{HostIP: p.HostIP, Port: p.Port, Protocol: p.Protocol})
		}
	}
	return out
}
