package composespec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/persys-dev/compute/internal/hostaccess"
)

// maxPublishedRange bounds how many host ports one published range may
// name ("8000-8099"): each becomes a placement resource.
const maxPublishedRange = 256

// Needs returns what a parsed project asks of its host: privileged mode
// (privileged, devices, added capabilities, host network/PID/IPC), host
// paths (bind mounts and local volumes backed by a host device path) and
// published host ports. Fields are compose paths ("services.web.privileged").
func Needs(p *types.Project) hostaccess.Needs {
	var n hostaccess.Needs
	priv := func(field string) {
		if !n.Privileged {
			n.Privileged, n.PrivilegedField = true, field
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		sp := "services." + name
		if s.Privileged {
			priv(sp + ".privileged")
		}
		if len(s.Devices) > 0 {
			priv(sp + ".devices")
		}
		if len(s.CapAdd) > 0 {
			priv(sp + ".cap_add")
		}
		for _, f := range []struct{ field, mode string }{{"network_mode", s.NetworkMode}, {"pid", s.Pid}, {"ipc", s.Ipc}} {
			if f.mode == "host" {
				priv(sp + "." + f.field)
			}
		}
		for i, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				n.HostPaths = append(n.HostPaths, hostaccess.Path{Path: v.Source, Field: fmt.Sprintf("%s.volumes[%d]", sp, i)})
			}
		}
		for i, pc := range s.Ports {
			field := fmt.Sprintf("%s.ports[%d]", sp, i)
			for _, port := range publishedPorts(pc.Published) {
				n.Ports = append(n.Ports, hostaccess.Port{HostIP: pc.HostIP, Port: port, Protocol: strings.ToLower(pc.Protocol), Field: field})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Volumes)) {
		if dev, ok := p.Volumes[name].DriverOpts["device"]; ok && strings.HasPrefix(dev, "/") {
			n.HostPaths = append(n.HostPaths, hostaccess.Path{Path: dev, Field: "volumes." + name + ".driver_opts.device"})
		}
	}
	return n
}

// publishedPorts expands "8080" or "8000-8010" into ports; an empty or
// malformed value (the engine picks a port) gives none.
func publishedPorts(published string) []uint32 {
	lo, hi, isRange := strings.Cut(published, "-")
	first, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || first == 0 {
		return nil
	}
	last := first
	if isRange {
		if last, err = strconv.ParseUint(hi, 10, 16); err != nil || last < first {
			return nil
		}
	}
	if last-first >= maxPublishedRange {
		last = first + maxPublishedRange - 1
	}
	out := make([]uint32, 0, last-first+1)
	for p := first; p <= last; p++ {
		out = append(out, uint32(p))
	}
	return out
}

// OptionsFor relaxes the refusals of host-level features for a caller or
// node that may use them: privileged mode and host namespaces when
// privileged is allowed, bind mounts under hostPaths. The scheduler passes
// everything for a caller with the host permission (the node's policy
// decides then); the agent passes its own policy.
func OptionsFor(privileged bool, hostPaths []string) Options {
	return Options{AllowPrivileged: privileged, AllowHostNetwork: privileged, AllowedBindPaths: slices.Clone(hostPaths)}
}
