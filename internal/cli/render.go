package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// Output formats of -o.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
	// FormatWide is the table with more columns; FormatName prints
	// kind/name lines for scripts (kubectl's -o wide and -o name). Commands
	// without a list print their table for both.
	FormatWide = "wide"
	FormatName = "name"
)

const none = "-"

// printObject writes m as indented JSON or as YAML, enums in the
// canonical spelling as the gateway sends them. protojson's own
// whitespace is deliberately unstable, so the JSON is re-indented here.
func printObject(w io.Writer, format string, m proto.Message) error {
	raw, err := contract.MarshalJSON(protojson.MarshalOptions{EmitUnpopulated: false}, m)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	switch format {
	case FormatJSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		buf.WriteByte('\n')
		_, err = w.Write(buf.Bytes())
		return err
	case FormatYAML:
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		_, err = w.Write(y)
		return err
	default:
		return fmt.Errorf("output format %q cannot print objects", format)
	}
}

// enumName is an enum value in the canonical spelling (ACTUAL_STATE_RUNNING
// -> RUNNING); the zero value prints as "-".
func enumName(e protoreflect.Enum) string {
	if e.Number() == 0 {
		return none
	}
	return contract.Name(e)
}

// stateKey strips the ActualState prefix from a summary map key.
func stateKey(k string) string { return strings.TrimPrefix(k, "ACTUAL_STATE_") }

// age prints how long ago t was, the way kubectl does: 45s, 12m, 5h, 3d.
func age(now time.Time, t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return none
	}
	return shortDuration(now.Sub(t.AsTime()))
}

// shortDuration prints d in its largest whole unit; negative is 0s.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	default:
		return fmt.Sprintf("%dy", int(d/(365*24*time.Hour)))
	}
}

// when prints a time in UTC with how far it is from now, either way:
// "(in 40s)" or "(5m ago)".
func when(now time.Time, t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return none
	}
	if d := t.AsTime().Sub(now); d > 0 {
		return t.AsTime().UTC().Format(time.RFC3339) + " (in " + shortDuration(d) + ")"
	}
	return stamp(now, t)
}

// stamp prints a time in UTC with its age.
func stamp(now time.Time, t *timestamppb.Timestamp) string {
	if a := age(now, t); a != none {
		return t.AsTime().UTC().Format(time.RFC3339) + " (" + a + " ago)"
	}
	return none
}

// humanBytes prints a byte count with a binary suffix, exact when a suffix
// divides it and with one decimal otherwise.
func humanBytes(b int64) string {
	if b < 0 {
		return "-" + humanBytes(-b)
	}
	units := []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if b >= u.size {
			if b%u.size == 0 {
				return strconv.FormatInt(b/u.size, 10) + u.suffix
			}
			return strconv.FormatFloat(float64(b)/float64(u.size), 'f', 1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}

func percent(part, whole int64) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", part*100/whole)
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// joinMap prints k=v pairs sorted by key.
func joinMap(m map[string]string) string {
	if len(m) == 0 {
		return none
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
}

// row writes tab-separated cells; empty cells print as "-".
func row(tw io.Writer, indent string, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = none
		}
		// Tabs or newlines inside a cell would break the columns.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(cells[i])
	}
	fmt.Fprintln(tw, indent+strings.Join(cells, "\t"))
}

// workloadNode is the node a workload runs on, or is assigned to.
func workloadNode(v *persysv1.WorkloadView) string {
	if n := v.GetStatus().GetNodeId(); n != "" {
		return n
	}
	return v.GetAssignment().GetNodeId()
}

// workloadState is the observed state; a workload without status is
// PENDING, and one being deleted shows DELETING.
func workloadState(v *persysv1.WorkloadView) string {
	st := v.GetStatus().GetState()
	if v.GetWorkload().GetDeleting() && st != persysv1.ActualState_ACTUAL_STATE_DELETING {
		return "DELETING"
	}
	if st == persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
		return "PENDING"
	}
	return enumName(st)
}

func printWorkloadsTable(w io.Writer, views []*persysv1.WorkloadView, now time.Time) error {
	if len(views) == 0 {
		_, err := fmt.Fprintln(w, "No workloads.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "NAME", "TYPE", "STATE", "NODE", "REVISION", "REASON", "AGE")
	for _, v := range views {
		wl := v.GetWorkload()
		row(tw, "",
			wl.GetName(),
			enumName(wl.GetSpec().GetType()),
			workloadState(v),
			workloadNode(v),
			strconv.FormatUint(wl.GetRevision(), 10),
			enumName(v.GetStatus().GetReason()),
			age(now, wl.GetCreatedAt()),
		)
	}
	return tw.Flush()
}

// nodeState is the node's liveness plus DRAINING while a drain moves its
// workloads, else CORDONED when placements are stopped.
func nodeState(n *persysv1.Node) string {
	s := enumName(n.GetState())
	switch {
	case n.GetDraining():
		s += ",DRAINING"
	case n.GetCordoned():
		s += ",CORDONED"
	}
	return s
}

func runtimes(n *persysv1.Node) string {
	var out []string
	for _, r := range n.GetCapabilities().GetRuntimes() {
		out = append(out, strings.ToLower(enumName(r)))
	}
	return orNone(strings.Join(out, ","))
}

func printNodesTable(w io.Writer, nodes []*persysv1.Node, now time.Time) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "No nodes.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "ID", "STATE", "CPU", "MEM", "RUNTIMES", "AGE")
	for _, n := range nodes {
		cpu, mem := nodeAllocation(n)
		row(tw, "", n.GetId(), nodeState(n), cpu, mem, runtimes(n), age(now, n.GetRegisteredAt()))
	}
	return tw.Flush()
}

// nodeAllocation is a node's CPU and memory cells: allocated/capacity.
func nodeAllocation(n *persysv1.Node) (cpu, mem string) {
	capa, alloc := n.GetCapabilities().GetCapacity(), n.GetAllocated()
	return manifest.FormatCPU(alloc.GetCpuMillis()) + "/" + manifest.FormatCPU(capa.GetCpuMillis()),
		humanBytes(alloc.GetMemoryBytes()) + "/" + humanBytes(capa.GetMemoryBytes())
}

func printEventsTable(w io.Writer, events []*persysv1.Event, now time.Time, indent string) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, indent+"No events.")
		return err
	}
	tw := newTable(w)
	row(tw, indent, "AGE", "TYPE", "WORKLOAD", "NODE", "REASON", "MESSAGE")
	for _, e := range events {
		row(tw, indent, age(now, e.GetTime()), e.GetType(), e.GetWorkload(), e.GetNodeId(), enumName(e.GetReason()), e.GetMessage())
	}
	return tw.Flush()
}

// kv writes "Key:" padded to a column, then the value.
type kv struct {
	w      io.Writer
	indent string
	width  int
}

func (k kv) line(key, val string) {
	fmt.Fprintf(k.w, "%s%-*s %s\n", k.indent, k.width, key+":", orNone(val))
}

func (k kv) head(key string) {
	fmt.Fprintf(k.w, "%s%s:\n", k.indent, key)
}

func resourcesLine(r *persysv1.Resources) string {
	if r == nil {
		return none
	}
	return fmt.Sprintf("cpu %s, memory %s, disk %s",
		manifest.FormatCPU(r.GetCpuMillis()), humanBytes(r.GetMemoryBytes()), humanBytes(r.GetDiskBytes()))
}

// portsLine prints every mapping, "host->container/proto"; a dynamic one
// as "dynamic 20001" with the port the scheduler chose (chosen, in the
// order of the dynamic mappings), or "dynamic" before it chose.
func portsLine(ports []*persysv1.PortMapping, chosen []uint32) string {
	var out []string
	k := 0
	for _, p := range ports {
		proto := p.GetProtocol()
		if proto == "" {
			proto = "tcp"
		}
		host := "auto"
		switch {
		case p.GetHostPort() != 0:
			host = strconv.FormatUint(uint64(p.GetHostPort()), 10)
		case p.GetDynamic() && k < len(chosen):
			host = "dynamic " + strconv.FormatUint(uint64(chosen[k]), 10)
		case p.GetDynamic():
			host = "dynamic"
		}
		if p.GetDynamic() {
			k++
		}
		if p.GetHostIp() != "" {
			host = p.GetHostIp() + ":" + host
		}
		out = append(out, fmt.Sprintf("%s->%d/%s", host, p.GetContainerPort(), proto))
	}
	return strings.Join(out, ", ")
}

func volumesLine(vols []*persysv1.Volume) string {
	var out []string
	for _, v := range vols {
		s := fmt.Sprintf("%s %s:%s", orNone(v.GetType()), v.GetSource(), v.GetTarget())
		if v.GetReadOnly() {
			s += " (ro)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// printDescribeWorkload prints a workload section by section: its
// identity and status, its spec by type, the placement, compose services
// and the failure, then its events.
func printDescribeWorkload(w io.Writer, v *persysv1.WorkloadView, now time.Time) error {
	k := kv{w: w, width: 15}
	describeWorkloadStatus(k, v, now)
	spec := v.GetWorkload().GetSpec()
	if c := spec.GetContainer(); c != nil {
		describeContainerSpec(k, c, v.GetAssignment().GetDynamicHostPorts())
	}
	if c := spec.GetCompose(); c != nil {
		describeComposeSpec(k, c)
	}
	if vm := spec.GetVm(); vm != nil {
		describeVMSpec(k, vm)
	}
	describeSecretRefs(k, spec)
	describeWorkloadPlacing(k, v)
	if err := describePlacement(w, k, v.GetAssignment(), now); err != nil {
		return err
	}
	if err := describeServices(w, k, v.GetStatus().GetServices()); err != nil {
		return err
	}
	describeHealth(w, k, v, now)
	describeFailure(w, k, v.GetStatus(), now)
	k.head("Events")
	return printEventsTable(w, v.GetEvents(), now, "  ")
}

// describeWorkloadStatus prints the workload's identity, revision and
// what the node reports of it.
func describeWorkloadStatus(k kv, v *persysv1.WorkloadView, now time.Time) {
	wl, st := v.GetWorkload(), v.GetStatus()
	spec := wl.GetSpec()
	k.line("Name", wl.GetName())
	k.line("UID", wl.GetUid())
	k.line("Type", enumName(spec.GetType()))
	k.line("Labels", joinMap(wl.GetLabels()))
	k.line("Desired", enumName(spec.GetDesiredState()))
	k.line("State", workloadState(v))
	k.line("Node", workloadNode(v))
	rev := strconv.FormatUint(wl.GetRevision(), 10)
	if st.GetRevision() != 0 && st.GetRevision() != wl.GetRevision() {
		rev += fmt.Sprintf(" (node has %d)", st.GetRevision())
	}
	k.line("Revision", rev)
	k.line("Created", stamp(now, wl.GetCreatedAt()))
	k.line("Updated", stamp(now, wl.GetUpdatedAt()))
	if st.GetRuntimeId() != "" {
		k.line("Runtime ID", st.GetRuntimeId())
	}
	if st.GetRestartCount() != 0 {
		k.line("Restarts", strconv.Itoa(int(st.GetRestartCount())))
	}
	if st.GetExitCode() != 0 {
		k.line("Exit code", strconv.Itoa(int(st.GetExitCode())))
	}
	if st.GetAttempts() != 0 {
		k.line("Attempts", strconv.Itoa(int(st.GetAttempts())))
	}
	if st.GetNextAttemptAt() != nil {
		k.line("Next attempt", when(now, st.GetNextAttemptAt()))
	}
}

// describeContainerSpec prints a container workload's spec.
func describeContainerSpec(k kv, c *persysv1.ContainerSpec, chosen []uint32) {
	k.line("Image", c.GetImage())
	if len(c.GetCommand()) > 0 {
		k.line("Command", strings.Join(c.GetCommand(), " "))
	}
	if len(c.GetArgs()) > 0 {
		k.line("Args", strings.Join(c.GetArgs(), " "))
	}
	if len(c.GetEnv()) > 0 {
		k.line("Env", joinMap(c.GetEnv()))
	}
	if len(c.GetPorts()) > 0 {
		k.line("Ports", portsLine(c.GetPorts(), chosen))
	}
	if len(c.GetVolumes()) > 0 {
		k.line("Volumes", volumesLine(c.GetVolumes()))
	}
	if c.GetRestartPolicy() != "" {
		k.line("Restart", c.GetRestartPolicy())
	}
	if c.GetPrivileged() {
		k.line("Privileged", "true")
	}
}

// describeWorkloadPlacing prints addresses, details and what placement
// reads from the spec.
func describeWorkloadPlacing(k kv, v *persysv1.WorkloadView) {
	st, spec := v.GetStatus(), v.GetWorkload().GetSpec()
	if len(st.GetAddresses()) > 0 {
		k.line("Addresses", strings.Join(st.GetAddresses(), ", "))
	}
	if len(st.GetDetails()) > 0 {
		k.line("Details", joinMap(st.GetDetails()))
	}
	k.line("Resources", resourcesLine(spec.GetResources()))
	k.line("Node selector", joinMap(spec.GetNodeSelector()))
	if p := spec.GetNodeLossPolicy(); p != persysv1.NodeLossPolicy_NODE_LOSS_POLICY_UNSPECIFIED {
		k.line("On node loss", strings.ToLower(enumName(p)))
	}
}

// describePlacement prints the assignment and the decision behind it,
// with every node the decision ruled out.
func describePlacement(w io.Writer, k kv, as *persysv1.Assignment, now time.Time) error {
	d := as.GetDecision()
	if d == nil && as.GetNodeId() == "" {
		return nil
	}
	k.head("Placement")
	sub := kv{w: w, indent: "  ", width: 13}
	sub.line("Node", as.GetNodeId())
	if p := as.GetPreviousNodeId(); p != "" {
		sub.line("Previous", p+" (its copy is removed once the one on "+orNone(as.GetNodeId())+" runs)")
	}
	if as.GetCause() != "" {
		sub.line("Cause", as.GetCause())
	}
	sub.line("Placed", stamp(now, as.GetPlacedAt()))
	if d == nil {
		return nil
	}
	sub.line("Strategy", d.GetStrategy())
	sub.line("Score", strconv.FormatFloat(d.GetScore(), 'f', 3, 64))
	sub.line("Feasible", fmt.Sprintf("%d/%d nodes", d.GetFeasibleNodes(), d.GetTotalNodes()))
	if len(d.GetRejections()) == 0 {
		return nil
	}
	sub.head("Rejected")
	tw := newTable(w)
	row(tw, "    ", "NODE", "REASON", "DETAIL")
	for _, r := range d.GetRejections() {
		row(tw, "    ", r.GetNodeId(), enumName(r.GetReason()), r.GetDetail())
	}
	return tw.Flush()
}

// describeServices prints a compose workload's services.
func describeServices(w io.Writer, k kv, services []*persysv1.ServiceStatus) error {
	if len(services) == 0 {
		return nil
	}
	k.head("Services")
	tw := newTable(w)
	// The health column appears when a service has a healthcheck.
	withHealth := false
	for _, sv := range services {
		withHealth = withHealth || sv.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
	}
	cols := []string{"SERVICE", "STATE", "RUNNING", "IMAGE", "EXIT", "MESSAGE"}
	if withHealth {
		cols = append(cols[:2:2], append([]string{"HEALTH"}, cols[2:]...)...)
	}
	row(tw, "  ", cols...)
	for _, sv := range services {
		exit := ""
		if sv.GetExitCode() != 0 {
			exit = strconv.Itoa(int(sv.GetExitCode()))
		}
		cells := []string{sv.GetName(), stateKey(enumName(sv.GetState())),
			fmt.Sprintf("%d/%d", sv.GetRunning(), sv.GetDesired()), sv.GetImage(), orNone(exit), orNone(sv.GetMessage())}
		if withHealth {
			cells = append(cells[:2:2], append([]string{strings.ToLower(enumName(sv.GetHealth()))}, cells[2:]...)...)
		}
		row(tw, "  ", cells...)
	}
	return tw.Flush()
}

// describeFailure prints why the workload failed, or the node's message.
func describeFailure(w io.Writer, k kv, st *persysv1.WorkloadStatus, now time.Time) {
	if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED || st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
		k.head("Failure")
		sub := kv{w: w, indent: "  ", width: 13}
		sub.line("Reason", enumName(st.GetReason()))
		sub.line("Message", st.GetMessage())
		sub.line("Since", stamp(now, st.GetUpdatedAt()))
	} else if st.GetMessage() != "" {
		k.line("Message", st.GetMessage())
	}
}

func printDescribeNode(w io.Writer, n *persysv1.Node, workloads []*persysv1.WorkloadView, now time.Time) error {
	capa := n.GetCapabilities()
	k := kv{w: w, width: 15}
	k.line("ID", n.GetId())
	k.line("Address", n.GetAddress())
	k.line("State", enumName(n.GetState()))
	k.line("Cordoned", strconv.FormatBool(n.GetCordoned()))
	k.line("Draining", strconv.FormatBool(n.GetDraining()))
	k.line("Hostname", capa.GetHostname())
	osArch := capa.GetOs()
	if capa.GetArch() != "" {
		osArch += "/" + capa.GetArch()
	}
	k.line("OS/Arch", osArch)
	k.line("Runtimes", runtimes(n))
	k.line("Labels", joinMap(capa.GetLabels()))
	if capa.GetVmAccel() != "" {
		k.line("VM accel", capa.GetVmAccel())
	}
	if r := capa.GetDynamicPorts(); r != nil {
		k.line("Dynamic ports", fmt.Sprintf("%d-%d", r.GetFirst(), r.GetLast()))
	}
	k.line("Registered", stamp(now, n.GetRegisteredAt()))
	k.line("Last heartbeat", stamp(now, n.GetLastHeartbeat()))
	k.head("Resources")
	tw := newTable(w)
	c, a, u := capa.GetCapacity(), n.GetAllocated(), n.GetUsage()
	row(tw, "  ", "RESOURCE", "CAPACITY", "ALLOCATED", "USED")
	row(tw, "  ", "cpu", manifest.FormatCPU(c.GetCpuMillis()),
		manifest.FormatCPU(a.GetCpuMillis())+percent(a.GetCpuMillis(), c.GetCpuMillis()),
		manifest.FormatCPU(u.GetCpuMillis())+percent(u.GetCpuMillis(), c.GetCpuMillis()))
	row(tw, "  ", "memory", humanBytes(c.GetMemoryBytes()),
		humanBytes(a.GetMemoryBytes())+percent(a.GetMemoryBytes(), c.GetMemoryBytes()),
		humanBytes(u.GetMemoryBytes())+percent(u.GetMemoryBytes(), c.GetMemoryBytes()))
	row(tw, "  ", "disk", humanBytes(c.GetDiskBytes()),
		humanBytes(a.GetDiskBytes())+percent(a.GetDiskBytes(), c.GetDiskBytes()),
		humanBytes(u.GetDiskBytes())+percent(u.GetDiskBytes(), c.GetDiskBytes()))
	if err := tw.Flush(); err != nil {
		return err
	}
	if pools := capa.GetStoragePools(); len(pools) > 0 {
		k.head("Storage pools")
		tw = newTable(w)
		row(tw, "  ", "POOL", "PATH", "CAPACITY", "ALLOCATED", "FREE")
		for _, p := range pools {
			row(tw, "  ", p.GetName(), p.GetPath(), humanBytes(p.GetCapacityBytes()),
				humanBytes(p.GetAllocatedBytes())+percent(p.GetAllocatedBytes(), p.GetCapacityBytes()), humanBytes(p.GetFreeBytes()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	k.head("Workloads")
	var on []*persysv1.WorkloadView
	for _, v := range workloads {
		if workloadNode(v) == n.GetId() {
			on = append(on, v)
		}
	}
	if len(on) == 0 {
		_, err := fmt.Fprintln(w, "  No workloads.")
		return err
	}
	tw = newTable(w)
	row(tw, "  ", "NAME", "STATE", "CPU", "MEMORY", "REVISION")
	for _, v := range on {
		r := v.GetWorkload().GetSpec().GetResources()
		row(tw, "  ", v.GetWorkload().GetName(), workloadState(v),
			manifest.FormatCPU(r.GetCpuMillis()), humanBytes(r.GetMemoryBytes()),
			strconv.FormatUint(v.GetWorkload().GetRevision(), 10))
	}
	return tw.Flush()
}

func printSummary(w io.Writer, s *persysv1.ClusterSummary) error {
	k := kv{w: w, width: 11}
	k.line("Leader", s.GetLeader())
	k.line("Nodes", fmt.Sprintf("%d total, %d ready", s.GetNodesTotal(), s.GetNodesReady()))
	k.line("Workloads", fmt.Sprintf("%d total", s.GetWorkloadsTotal()))
	if len(s.GetWorkloadsByState()) > 0 {
		keys := make([]string, 0, len(s.GetWorkloadsByState()))
		for key := range s.GetWorkloadsByState() {
			keys = append(keys, key)
		}
		sort.Slice(keys, func(i, j int) bool { return stateKey(keys[i]) < stateKey(keys[j]) })
		tw := newTable(w)
		for _, key := range keys {
			row(tw, "  ", stateKey(key), strconv.Itoa(int(s.GetWorkloadsByState()[key])))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	c, a := s.GetCapacity(), s.GetAllocated()
	k.line("Capacity", resourcesLine(c))
	k.line("Allocated", fmt.Sprintf("cpu %s%s, memory %s%s, disk %s%s",
		manifest.FormatCPU(a.GetCpuMillis()), percent(a.GetCpuMillis(), c.GetCpuMillis()),
		humanBytes(a.GetMemoryBytes()), percent(a.GetMemoryBytes(), c.GetMemoryBytes()),
		humanBytes(a.GetDiskBytes()), percent(a.GetDiskBytes(), c.GetDiskBytes())))
	return nil
}

// printDrain writes one line per workload of a drain (moved to its new
// node, or not moved with the reason) and a closing line.
func printDrain(w io.Writer, resp *persysv1.DrainResponse) error {
	moved := 0
	for _, r := range resp.GetWorkloads() {
		switch r.GetResult() {
		case "moved":
			moved++
			fmt.Fprintf(w, "workload/%s moved to %s\n", r.GetWorkload(), orNone(r.GetToNode()))
		case "unmoved":
			line := "workload/" + r.GetWorkload() + " not moved: " + enumName(r.GetReason())
			if r.GetMessage() != "" {
				line += ": " + r.GetMessage()
			}
			fmt.Fprintln(w, line)
		default:
			fmt.Fprintf(w, "workload/%s %s\n", r.GetWorkload(), orNone(r.GetResult()))
		}
	}
	id := resp.GetNode().GetId()
	total := len(resp.GetWorkloads())
	var err error
	switch {
	case total == 0:
		_, err = fmt.Fprintf(w, "node/%s drained (no workloads)\n", id)
	case resp.GetComplete():
		_, err = fmt.Fprintf(w, "node/%s drained (%d of %d workloads moved)\n", id, moved, total)
	default:
		_, err = fmt.Fprintf(w, "node/%s cordoned, drain incomplete (%d of %d workloads moved)\n", id, moved, total)
	}
	return err
}

// printLeader writes who leads the schedulers.
func printLeader(w io.Writer, info *persysv1.LeaderInfo) error {
	k := kv{w: w, width: 12}
	k.line("Leader", info.GetId())
	k.line("Address", info.GetAddress())
	if info.GetIsLeader() {
		k.line("Answered by", "the leader")
	} else {
		k.line("Answered by", "a follower")
	}
	if info.GetAddress() == "" {
		_, err := fmt.Fprintln(w, "No leader is known; an election may be under way.")
		return err
	}
	return nil
}

func describeComposeSpec(k kv, c *persysv1.ComposeSpec) {
	if g := c.GetGit(); g != nil {
		src := g.GetUrl()
		if g.GetRef() != "" {
			src += " @ " + g.GetRef()
		}
		if g.GetPath() != "" {
			src += " (" + g.GetPath() + ")"
		}
		k.line("Source", src)
		if g.GetResolvedCommit() != "" {
			k.line("Commit", g.GetResolvedCommit())
		}
		if g.GetCredentialsSecret() != "" {
			k.line("Git secret", g.GetCredentialsSecret())
		}
		if g.GetPollIntervalSeconds() > 0 {
			k.line("Poll", (time.Duration(g.GetPollIntervalSeconds()) * time.Second).String())
		}
	} else {
		k.line("Source", fmt.Sprintf("inline (%d bytes)", len(c.GetInline())))
	}
	if len(c.GetEnv()) > 0 {
		k.line("Env", joinMap(c.GetEnv()))
	}
	if c.GetVolumeRetain() == persysv1.RetainPolicy_RETAIN_POLICY_RETAIN {
		k.line("Volumes", "retained on delete")
	}
}

func describeVMSpec(k kv, vm *persysv1.VMSpec) {
	k.line("vCPUs", strconv.Itoa(int(vm.GetVcpus())))
	k.line("Memory", humanBytes(vm.GetMemoryBytes()))
	if vm.GetAccel() != "" {
		k.line("Accel", vm.GetAccel())
	}
	var disks []string
	for _, d := range vm.GetDisks() {
		var what string
		switch {
		case d.GetIso() != "":
			what = "iso " + d.GetIso()
		case d.GetBaseImage() != "" && d.GetFullCopy():
			what = "copy of " + d.GetBaseImage()
		case d.GetBaseImage() != "":
			what = "overlay on " + d.GetBaseImage()
		default:
			what = "blank " + humanBytes(d.GetSizeBytes())
		}
		if d.GetBootIndex() > 0 {
			what += fmt.Sprintf(", boot %d", d.GetBootIndex())
		}
		disks = append(disks, fmt.Sprintf("%s (%s: %s)", d.GetName(), d.GetPool(), what))
	}
	if len(disks) > 0 {
		k.line("Disks", strings.Join(disks, "; "))
	}
	if kb := vm.GetKernelBoot(); kb != nil {
		k.line("Kernel", kb.GetPool()+": "+kb.GetKernel()+" "+kb.GetInitrd())
	}
	var nets []string
	for _, n := range vm.GetNetworks() {
		mode := n.GetMode()
		if mode == "" {
			mode = "user"
		}
		desc := mode
		if n.GetBridge() != "" {
			desc += " " + n.GetBridge()
		}
		for _, pf := range n.GetPortForwards() {
			proto := pf.GetProtocol()
			if proto == "" {
				proto = "tcp"
			}
			desc += fmt.Sprintf(" %d->%d/%s", pf.GetHostPort(), pf.GetGuestPort(), proto)
		}
		nets = append(nets, desc)
	}
	if len(nets) > 0 {
		k.line("Networks", strings.Join(nets, "; "))
	}
	if l := vm.GetLogin(); l != nil {
		login := l.GetUser()
		switch {
		case l.GetGeneratePassword():
			login += ", generated password in secret " + l.GetPasswordSecret()
		case l.GetPasswordHash() != "":
			login += ", password hash set"
		}
		if n := len(l.GetSshAuthorizedKeys()); n > 0 {
			login += fmt.Sprintf(", %d SSH key(s)", n)
		}
		k.line("Login", login)
	}
}

// describeSecretRefs names the secrets a workload uses; values are never
// part of a spec.
func describeSecretRefs(k kv, spec *persysv1.WorkloadSpec) {
	var refs []string
	for _, e := range spec.GetSecretEnv() {
		refs = append(refs, fmt.Sprintf("env %s from %s/%s", e.GetName(), e.GetSecret(), e.GetKey()))
	}
	for _, f := range spec.GetSecretFiles() {
		src := f.GetSecret()
		if f.GetKey() != "" {
			src += "/" + f.GetKey()
		}
		refs = append(refs, fmt.Sprintf("file %s from %s", f.GetPath(), src))
	}
	for _, p := range spec.GetImagePullSecrets() {
		refs = append(refs, "pull with "+p)
	}
	if len(refs) > 0 {
		k.line("Secrets", strings.Join(refs, "; "))
	}
}
