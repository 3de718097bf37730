package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// printWorkloads writes a workload list as -o table, wide or name asks.
func printWorkloads(w io.Writer, format string, views []*persysv1.WorkloadView, now time.Time) error {
	switch format {
	case FormatName:
		for _, v := range views {
			if _, err := fmt.Fprintf(w, "workload/%s\n", v.GetWorkload().GetName()); err != nil {
				return err
			}
		}
		return nil
	case FormatWide:
		return printWorkloadsWide(w, views, now)
	}
	if federated(views) {
		return printFederatedWorkloads(w, views, now) // through a federation (clusters.go)
	}
	return printWorkloadsTable(w, views, now)
}

// printWorkloadsWide is the table plus what a workload runs, its attempts,
// addresses, published host ports and labels.
func printWorkloadsWide(w io.Writer, views []*persysv1.WorkloadView, now time.Time) error {
	if len(views) == 0 {
		_, err := fmt.Fprintln(w, "No workloads.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "NAME", "TYPE", "STATE", "READY", "NODE", "REVISION", "REASON", "AGE", "SOURCE", "ATTEMPTS", "ADDRESSES", "PORTS", "LABELS")
	for _, v := range views {
		wl, st := v.GetWorkload(), v.GetStatus()
		row(tw, "",
			wl.GetName(),
			enumName(wl.GetSpec().GetType()),
			workloadState(v),
			readyCell(st),
			workloadNode(v),
			strconv.FormatUint(wl.GetRevision(), 10),
			enumName(st.GetReason()),
			age(now, wl.GetCreatedAt()),
			workloadSource(wl.GetSpec()),
			strconv.Itoa(int(st.GetAttempts())),
			orNone(strings.Join(st.GetAddresses(), ",")),
			hostPortsCell(wl.GetSpec(), v.GetAssignment().GetDynamicHostPorts()),
			joinMap(wl.GetLabels()),
		)
	}
	return tw.Flush()
}

// readyCell says whether a running workload passes its readiness checks
// (a service's endpoints hold only ready replicas); "-" when not running.
func readyCell(st *persysv1.WorkloadStatus) string {
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		return none
	}
	return strconv.FormatBool(st.GetReady())
}

// hostPortsCell lists a container's published host ports,
// "host->container/proto" separated by commas, the dynamic ones with the
// port the scheduler chose ("?" before it chose).
func hostPortsCell(spec *persysv1.WorkloadSpec, chosen []uint32) string {
	var out []string
	k := 0
	for _, p := range spec.GetContainer().GetPorts() {
		host := ""
		switch {
		case p.GetHostPort() != 0:
			host = strconv.FormatUint(uint64(p.GetHostPort()), 10)
		case p.GetDynamic() && k < len(chosen):
			host = strconv.FormatUint(uint64(chosen[k]), 10)
		case p.GetDynamic():
			host = "?"
		}
		if p.GetDynamic() {
			k++
		}
		if host == "" {
			continue
		}
		proto := p.GetProtocol()
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, host+"->"+strconv.FormatUint(uint64(p.GetContainerPort()), 10)+"/"+proto)
	}
	return orNone(strings.Join(out, ","))
}

// workloadSource says in one cell what a workload runs: the container
// image, the compose file's origin, or the VM's first disk.
func workloadSource(spec *persysv1.WorkloadSpec) string {
	switch {
	case spec.GetContainer() != nil:
		return orNone(spec.GetContainer().GetImage())
	case spec.GetCompose().GetGit() != nil:
		g := spec.GetCompose().GetGit()
		return g.GetUrl() + "@" + orNone(g.GetRef())
	case spec.GetCompose() != nil:
		return "compose (inline)"
	case spec.GetVm() != nil:
		if disks := spec.GetVm().GetDisks(); len(disks) > 0 {
			return "vm " + orNone(disks[0].GetBaseImage())
		}
		return "vm"
	}
	return none
}

// printNodes writes a node list as -o table, wide or name asks.
func printNodes(w io.Writer, format string, nodes []*persysv1.Node, now time.Time) error {
	switch format {
	case FormatName:
		for _, n := range nodes {
			if _, err := fmt.Fprintf(w, "node/%s\n", n.GetId()); err != nil {
				return err
			}
		}
		return nil
	case FormatWide:
		return printNodesWide(w, nodes, now)
	}
	if federatedNodes(nodes) {
		return printFederatedNodes(w, nodes, now) // through a federation (clusters.go)
	}
	return printNodesTable(w, nodes, now)
}

// printNodesWide is the table plus the agent's address, live usage, last
// heartbeat and labels.
func printNodesWide(w io.Writer, nodes []*persysv1.Node, now time.Time) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "No nodes.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "ID", "STATE", "CPU", "MEM", "RUNTIMES", "AGE", "ADDRESS", "USED CPU", "USED MEM", "HEARTBEAT", "LABELS")
	for _, n := range nodes {
		capa, alloc, used := n.GetCapabilities().GetCapacity(), n.GetAllocated(), n.GetUsage()
		row(tw, "",
			n.GetId(),
			nodeState(n),
			manifest.FormatCPU(alloc.GetCpuMillis())+"/"+manifest.FormatCPU(capa.GetCpuMillis()),
			humanBytes(alloc.GetMemoryBytes())+"/"+humanBytes(capa.GetMemoryBytes()),
			runtimes(n),
			age(now, n.GetRegisteredAt()),
			orNone(n.GetAddress()),
			manifest.FormatCPU(used.GetCpuMillis()),
			humanBytes(used.GetMemoryBytes()),
			age(now, n.GetLastHeartbeat()),
			joinMap(n.GetCapabilities().GetLabels()),
		)
	}
	return tw.Flush()
}

// gettable are the kinds get knows, with their short names, for get
// without arguments.
var gettable = []struct{ kind, short, what string }{
	{"workloads", "wl", "containers, compose projects and VMs, with state, node and revision (-l key=value selects by label)"},
	{"services", "svc", "replicated workloads with their rollout: ready, updated and available replicas"},
	{"endpoints", "ep", "a service's ready replicas with node address and host ports (get endpoints SERVICE [--watch])"},
	{"nodes", "no", "the agents, with state, allocation and runtimes"},
	{"leader", "", "the scheduler replica that leads"},
	{"clusters", "cl", "a federation's member clusters with their health (with the federation's config)"},
}

func printGettable(w io.Writer) error {
	tw := newTable(w)
	row(tw, "", "KIND", "SHORT", "WHAT")
	for _, g := range gettable {
		row(tw, "", g.kind, orNone(g.short), g.what)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\nUse: persysctl get KIND [NAME] [-o table|wide|name|json|yaml]")
	return err
}
