package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/manifest"
)

// Member clusters of a federation, its workloads and the members' nodes:
// `persysctl get clusters`, `get workloads` and `get nodes` with the
// federation's persysctl config.

func isClustersKind(arg string) bool {
	switch strings.ToLower(arg) {
	case "cluster", "clusters", "cl":
		return true
	}
	return false
}

func (o *options) getClusters(cmd *cobra.Command, args []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	var list []fedapi.Cluster
	if len(args) == 2 {
		one, err := c.GetCluster(cmd.Context(), args[1])
		if err != nil {
			return err
		}
		list = []fedapi.Cluster{*one}
	} else {
		all, err := c.ListClusters(cmd.Context())
		if err != nil {
			return err
		}
		list = all.Clusters
	}
	return printClusters(o.streams.Out, o.output, list, o.now())
}

func printClusters(w io.Writer, format string, list []fedapi.Cluster, now time.Time) error {
	switch format {
	case FormatJSON, FormatYAML:
		return printPlain(w, format, fedapi.ClusterList{Clusters: list})
	case FormatName:
		for _, c := range list {
			if _, err := fmt.Fprintf(w, "cluster/%s\n", c.Name); err != nil {
				return err
			}
		}
		return nil
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No clusters.")
		return err
	}
	tw := newTable(w)
	head := []string{"NAME", "STATE", "REACHABLE", "LEADER", "NODES", "CPU", "MEMORY", "WORKLOADS", "LAST CONTACT"}
	if format == FormatWide {
		head = append(head, "LABELS", "GATEWAY", "IDENTITY", "LAST ERROR")
	}
	row(tw, "", head...)
	for _, c := range list {
		h := c.Health
		cells := []string{
			c.Name, string(h.State), fmt.Sprint(h.Reachable), orNone(h.Leader),
			fmt.Sprintf("%d/%d", h.NodesReady, h.NodesTotal),
			fmt.Sprintf("%dm/%dm", h.CPUAllocatedMillis, h.CPUCapacityMillis),
			humanBytes(h.MemoryAllocatedBytes) + "/" + humanBytes(h.MemoryCapacityBytes),
			fmt.Sprint(h.Workloads), sinceCell(now, h.LastContact),
		}
		if format == FormatWide {
			cells = append(cells, orNone(joinMap(c.Labels)), c.Gateway, c.Identity, orNone(h.LastError))
		}
		row(tw, "", cells...)
	}
	return tw.Flush()
}

// sinceCell is "5s ago", or "never" before the first contact.
func sinceCell(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return shortDuration(now.Sub(t)) + " ago"
}

// printPlain prints a plain (non-protobuf) value as indented JSON or YAML.
func printPlain(w io.Writer, format string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	if format == FormatYAML {
		if raw, err = yaml.JSONToYAML(raw); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		_, err = w.Write(raw)
		return err
	}
	_, err = w.Write(append(raw, '\n'))
	return err
}

// federated reports whether the views came through a federation: each
// carries the member cluster it runs in.
func federated(views []*persysv1.WorkloadView) bool {
	for _, v := range views {
		if v.GetWorkload().GetLabels()[fedapi.LabelCluster] == "" {
			return false
		}
	}
	return len(views) > 0
}

// printFederatedWorkloads is the workload table with the member cluster
// first.
func printFederatedWorkloads(w io.Writer, views []*persysv1.WorkloadView, now time.Time) error {
	tw := newTable(w)
	row(tw, "", "NAME", "CLUSTER", "TYPE", "STATE", "NODE", "REVISION", "REASON", "AGE")
	for _, v := range views {
		wl := v.GetWorkload()
		row(tw, "",
			wl.GetName(),
			wl.GetLabels()[fedapi.LabelCluster],
			enumName(wl.GetSpec().GetType()),
			workloadState(v),
			orNone(workloadNode(v)),
			strconv.FormatUint(wl.GetRevision(), 10),
			enumName(v.GetStatus().GetReason()),
			age(now, wl.GetCreatedAt()),
		)
	}
	return tw.Flush()
}

// federatedNodes reports whether the nodes came through a federation:
// each carries its member cluster among its labels.
func federatedNodes(nodes []*persysv1.Node) bool {
	for _, n := range nodes {
		if n.GetCapabilities().GetLabels()[fedapi.LabelCluster] == "" {
			return false
		}
	}
	return len(nodes) > 0
}

// printFederatedNodes is the node table with the member cluster first.
func printFederatedNodes(w io.Writer, nodes []*persysv1.Node, now time.Time) error {
	tw := newTable(w)
	row(tw, "", "CLUSTER", "ID", "STATE", "CPU", "MEM", "RUNTIMES", "AGE")
	for _, n := range nodes {
		capa, alloc := n.GetCapabilities().GetCapacity(), n.GetAllocated()
		row(tw, "",
			n.GetCapabilities().GetLabels()[fedapi.LabelCluster],
			n.GetId(),
			nodeState(n),
			manifest.FormatCPU(alloc.GetCpuMillis())+"/"+manifest.FormatCPU(capa.GetCpuMillis()),
			humanBytes(alloc.GetMemoryBytes())+"/"+humanBytes(capa.GetMemoryBytes()),
			runtimes(n),
			age(now, n.GetRegisteredAt()),
		)
	}
	return tw.Flush()
}
