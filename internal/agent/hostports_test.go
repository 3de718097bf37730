package agent

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
)

func TestParseProcNet(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the samples are from a little-endian host")
	}
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 101 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 103 1 0000000000000000 20 4 30 10 -1
   3: garbage
   4: 0100007F:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104 1
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 201 1
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 202 1
   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 203 1
`
	const udp = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 301 2 0000000000000000 0
  101: 0F02000A:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 302 2 0000000000000000 0
`
	tests := []struct {
		name, data, proto string
		want              []hostaccess.Port
	}{
		{"tcp listeners only", tcp, "tcp", []hostaccess.Port{
			{HostIP: "127.0.0.1", Port: 8080, Protocol: "tcp"}, {Port: 22, Protocol: "tcp"}}},
		{"tcp6: any, loopback, v4-mapped", tcp6, "tcp", []hostaccess.Port{
			{Port: 80, Protocol: "tcp"}, {HostIP: "::1", Port: 8081, Protocol: "tcp"}, {HostIP: "127.0.0.1", Port: 8082, Protocol: "tcp"}}},
		{"udp unconnected only", udp, "udp", []hostaccess.Port{{HostIP: "127.0.0.53", Port: 53, Protocol: "udp"}}},
		{"empty", "", "tcp", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseProcNet([]byte(tt.data), tt.proto, nil); !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPortsProtoSortsAndBounds(t *testing.T) {
	var in []hostaccess.Port
	for p := uint32(2000); p > 0; p-- {
		in = append(in, hostaccess.Port{Port: p, Protocol: "tcp"}, hostaccess.Port{Port: p, Protocol: "tcp"})
	}
	out := portsProto(in)
	if len(out) != maxUsedHostPorts || out[0].GetPort() != 1 || out[maxUsedHostPorts-1].GetPort() != maxUsedHostPorts {
		t.Fatalf("%d ports from %d to %d, want the lowest %d once each", len(out), out[0].GetPort(), out[len(out)-1].GetPort(), maxUsedHostPorts)
	}
}

// TestUsedHostPorts: a port bound by a process on the host is reported; a
// port of a workload the agent applied is its own and is not.
func TestUsedHostPorts(t *testing.T) {
	if _, err := readProcNetTCP(); err != nil {
		if goruntime.GOOS == "linux" {
			t.Fatalf("no /proc/net/tcp on Linux: %v", err)
		}
		t.Skipf("no /proc/net/tcp outside Linux: %v", err)
	}
	other := listenTCP(t)
	mine := listenTCP(t) // stands for the proxy of the workload's port
	a, rt := simAgent(t)
	has := func(port uint32) bool {
		return slices.ContainsFunc(a.usedHostPorts(), func(p *persysv1.HostPort) bool {
			return p.GetPort() == port && p.GetProtocol() == "tcp" && p.GetHostIp() == "127.0.0.1"
		})
	}
	if !has(other) || !has(mine) {
		t.Fatalf("ports %d and %d are bound and not both reported: %v", other, mine, a.usedHostPorts())
	}
	spec := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Container: &persysv1.ContainerSpec{Image: "x:1",
			Ports: []*persysv1.PortMapping{{ContainerPort: 80, HostPort: mine, HostIp: "127.0.0.1"}}}}
	resp, _, err := a.apply(context.Background(), rt, &persysv1.ApplyWorkloadRequest{Name: "w", Uid: "u", Revision: 1, Spec: spec})
	if err != nil || resp.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
		t.Fatalf("apply: %v %v", resp, err)
	}
	if !has(other) || has(mine) {
		t.Fatalf("after the apply: port %d reported %v (want true), its own port %d reported %v (want false)", other, has(other), mine, has(mine))
	}
}

func readProcNetTCP() ([]byte, error) { return os.ReadFile(procNetTables[0].path) }

func listenTCP(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// TestLedgerReleasesFailed: a workload reported FAILED holds nothing
// against admission; its re-apply is checked again, and an entry changed
// after the listing began is left alone.
func TestLedgerReleasesFailed(t *testing.T) {
	l, err := openLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	capacity := &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1000}
	vm := allocation{UID: "u", Revision: 1, CPUMillis: 700, MemoryBytes: 100, Ports: []allocPort{{Port: 22}}}
	if _, _, r := l.reserve("vm", vm, capacity, 0.8, true); r != nil {
		t.Fatal(r)
	}
	if _, _, r := l.reserve("web", allocation{UID: "w", Revision: 1, CPUMillis: 700}, capacity, 0.8, true); r == nil {
		t.Fatal("web admitted beside the vm's 700m on 1000m at 80%")
	}
	mark := l.mark()
	l.release(map[string]bool{"vm": true}, mark)
	if got := l.total().GetCpuMillis(); got != 0 || len(l.ports()) != 0 {
		t.Fatalf("after the vm failed: %dm and ports %v held, want none", got, l.ports())
	}
	if _, _, r := l.reserve("web", allocation{UID: "w", Revision: 1, CPUMillis: 700}, capacity, 0.8, true); r != nil {
		t.Fatalf("web refused after the vm failed: %v", r)
	}
	// The vm's re-apply is admitted only if it fits again.
	if _, _, r := l.reserve("vm", vm, capacity, 0.8, true); r == nil {
		t.Fatal("the failed vm's re-apply was admitted over the threshold")
	}
	// A reserve after the mark survives a release from an older listing.
	mark = l.mark()
	if _, _, r := l.reserve("db", allocation{UID: "d", Revision: 1, CPUMillis: 100}, capacity, 0.8, true); r != nil {
		t.Fatal(r)
	}
	l.release(map[string]bool{"db": true}, mark)
	if e, _ := l.get("db"); e.CPUMillis != 100 {
		t.Fatalf("db reserved after the listing began was released: %+v", e)
	}
}
