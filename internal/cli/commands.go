package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/manifest"
)

// readManifest reads a manifest file, or standard input for "-". It reads
// one byte past the stream limit so that the gateway answers 413 for too
// large input instead of parsing a truncated document.
func readManifest(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		if stdin == nil {
			return nil, fmt.Errorf("-f -: no standard input")
		}
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, manifest.MaxStreamSize+1))
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, err)
	}
	return data, nil
}

func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("invalid --timeout %s: must be positive", d)
	}
	return nil
}

// failed returns the error of a FAILED workload, with its reason and message.
func failed(v *persysv1.WorkloadView) error {
	return fmt.Errorf("workload %s failed: %s", v.GetWorkload().GetName(), failure(v))
}

// failure is a FAILED workload's reason and message.
func failure(v *persysv1.WorkloadView) string {
	st := v.GetStatus()
	msg := enumName(st.GetReason())
	if st.GetMessage() != "" {
		msg += ": " + st.GetMessage()
	}
	return msg
}

// failedBefore reports whether the view an apply answered with already
// shows the workload's revision FAILED. The apply did not change the spec
// (unchanged, or labels only), so a wait would hand back that older
// failure as if this apply had caused it; the caller says so instead.
func failedBefore(v *persysv1.WorkloadView) bool {
	st := v.GetStatus()
	return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
		st.GetRevision() == v.GetWorkload().GetRevision()
}

// failedBeforeErr is the error of apply --wait for a workload that
// failedBefore.
func failedBeforeErr(v *persysv1.WorkloadView) error {
	name := v.GetWorkload().GetName()
	return fmt.Errorf("workload %s: revision %d had already failed before this apply, which did not change its spec: %s "+
		"(`persysctl retry workload %s` tries it again)", name, v.GetWorkload().GetRevision(), failure(v), name)
}

// waitFor is the state --wait waits for: stopped when the workload asks
// for it, else running.
func waitFor(v *persysv1.WorkloadView) string {
	if v.GetWorkload().GetSpec().GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		return "stopped"
	}
	return "running"
}

func isFailed(v *persysv1.WorkloadView) bool {
	return v.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED
}

func newApplyCommand(o *options) *cobra.Command {
	var (
		file    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Create or update workloads from a manifest (idempotent)",
		Long: "Send a workload manifest (YAML or JSON) to the cluster. Applying the same manifest again changes nothing.\n" +
			"With --wait, block until the new revision runs (or is stopped, when the manifest asks for that) or fails;\n" +
			"a failed workload prints its reason and message and exits with status 1.\n\n" +
			"A file may hold several workloads as YAML documents separated by --- lines (at most 1000, with distinct\n" +
			"names). They are applied in one call once every document is valid: one invalid document applies nothing\n" +
			"and its fields are named documents[i]. Each workload prints one line, workload/NAME created, updated or\n" +
			"unchanged, or workload/NAME error: MESSAGE when it alone could not be applied (exit status 1). With --wait,\n" +
			"the applied workloads are waited for one after the other, each within --timeout, with a line each; exit\n" +
			"status 1 names those that failed or timed out. With -o json or yaml the whole answer is printed, one result\n" +
			"per document (after --wait, each with the workload as the wait left it).\n\n" +
			"Services (kind: Service) are applied one by one; with --wait each is followed, as rollout status --wait\n" +
			"does, until its update completes, fails, pauses or waits for a promote (exit status 1 when one failed).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f is required: a manifest file, or - for standard input")
			}
			if wait {
				if err := checkTimeout(timeout); err != nil {
					return err
				}
			}
			data, err := readManifest(file, o.streams.In)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if svcs, rest, ok := splitServices(data); ok {
				// Services are applied one by one (and with --wait followed
				// until their rollouts settle); the workloads of the
				// stream, if any, as below.
				if err := o.applyServices(cmd, c, svcs, wait, timeout); err != nil || rest == nil {
					return err
				}
				data = rest
			}
			// Several documents go in one call. Counting them does not
			// validate them: the gateway does, naming the invalid ones, and
			// refuses a stream with too many. Input past the stream limit
			// takes the single path, whose refusal names the limit of one
			// manifest, the one such a file mostly breaks.
			if docs, err := manifest.SplitDocuments(data); (err == nil && len(docs) > 1) ||
				(err != nil && len(data) <= manifest.MaxStreamSize) {
				return o.applyAll(cmd, c, data, wait, timeout)
			}
			resp, err := c.Apply(cmd.Context(), data)
			if err != nil {
				return err
			}
			name := resp.GetWorkload().GetWorkload().GetName()
			if !wait {
				if o.structured() {
					return printObject(o.streams.Out, o.output, resp)
				}
				_, err := fmt.Fprintf(o.streams.Out, "workload/%s %s\n", name, resp.GetResult())
				return err
			}
			if !o.structured() {
				fmt.Fprintf(o.streams.Out, "workload/%s %s\n", name, resp.GetResult())
			}
			if failedBefore(resp.GetWorkload()) {
				if o.structured() {
					if err := printObject(o.streams.Out, o.output, resp.GetWorkload()); err != nil {
						return err
					}
				}
				return failedBeforeErr(resp.GetWorkload())
			}
			forState := waitFor(resp.GetWorkload())
			view, err := c.Wait(cmd.Context(), name, forState, timeout)
			if err != nil {
				return err
			}
			if o.structured() {
				if err := printObject(o.streams.Out, o.output, view); err != nil {
					return err
				}
			}
			if isFailed(view) {
				return failed(view)
			}
			if !o.structured() {
				fmt.Fprintf(o.streams.Out, "workload/%s %s on %s (revision %d)\n", name, forState, orNone(workloadNode(view)), view.GetWorkload().GetRevision())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, or - for standard input")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the workload runs or fails (a service: until its rollout settles)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return cmd
}

func parseSelectorFlag(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	sel := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("invalid --selector: %q is not of the form key=value", part)
		}
		sel[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return sel, nil
}

func newGetCommand(o *options) *cobra.Command {
	var (
		selector string
		watch    bool
	)
	cmd := &cobra.Command{
		Use:   "get workloads|workload NAME|services|service NAME|endpoints SERVICE|nodes|node ID|leader|clusters",
		Short: "List workloads, services or nodes, show one, or show the scheduler leader",
		Long: "List workloads, services or nodes, show one, or show the scheduler leader. Without arguments, list what can be got.\n" +
			"-o wide adds columns, -o name prints kind/name lines for scripts, -o json and -o yaml the whole objects.",
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return printGettable(o.streams.Out)
			}
			if strings.EqualFold(args[0], "leader") {
				if len(args) != 1 {
					return fmt.Errorf("get leader takes no name")
				}
				if selector != "" {
					return fmt.Errorf("--selector applies only to listing workloads")
				}
				return o.runLeader(cmd)
			}
			if isClustersKind(args[0]) && selector == "" && !watch {
				return o.getClusters(cmd, args) // a federation's members (clusters.go)
			}
			if isEndpointsKind(args[0]) {
				if len(args) != 2 || selector != "" {
					return fmt.Errorf("get endpoints takes one service name and no --selector")
				}
				c, err := o.client()
				if err != nil {
					return err
				}
				defer c.Close()
				return o.getEndpoints(cmd, c, args[1], watch)
			}
			kind, err := kindOf(args[0])
			if err != nil {
				return err
			}
			sel, err := parseSelectorFlag(selector)
			if err != nil {
				return err
			}
			if sel != nil && (kind != "workload" || len(args) == 2) {
				return fmt.Errorf("--selector applies only to listing workloads")
			}
			if watch {
				return o.getWatch(cmd, kind, args, sel)
			}
			return o.runGet(cmd, kind, args, sel)
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector for workloads, key=value[,key=value]")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the list, print a row for every change until interrupted (get endpoints SERVICE: the whole set again each time it changes; -o json: one JSON line each)")
	return cmd
}

func newDescribeCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "describe workload NAME|service NAME|node ID",
		Short: "Show a workload, a service or a node in detail",
		Long: "describe workload shows state, node, revision, uid, image, resources, the placement decision\n" +
			"(feasible and total nodes, each rejected node with its reason), the failure reason and message,\n" +
			"and recent events. describe node shows capacity, allocation, usage and the node's workloads.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := kindOf(args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if kind == "service" {
				return o.describeService(cmd, c, args[1])
			}
			if kind == "workload" {
				v, err := c.GetWorkload(ctx, args[1], true)
				if err != nil {
					return err
				}
				if o.structured() {
					return printObject(o.streams.Out, o.output, v)
				}
				return printDescribeWorkload(o.streams.Out, v, o.now())
			}
			n, err := c.GetNode(ctx, args[1])
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, n)
			}
			list, err := c.ListWorkloads(ctx)
			if err != nil {
				return err
			}
			return printDescribeNode(o.streams.Out, n, list.GetWorkloads(), o.now())
		},
	}
}

// workloadOnly checks that a command got "workload NAME".
func workloadOnly(verb string, args []string) error {
	kind, err := kindOf(args[0])
	if err != nil {
		return err
	}
	if kind != "workload" {
		return fmt.Errorf("%s applies only to workloads", verb)
	}
	return nil
}

func newDeleteCommand(o *options) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "delete workload|service NAME",
		Short: "Delete a workload or a service (with its replicas)",
		Long:  "Delete a workload. Removal from its node is asynchronous; --wait blocks until it is gone.",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kind, _ := kindOf(args[0]); kind == "service" {
				return o.deleteService(cmd, args[1], wait)
			}
			if err := workloadOnly("delete", args); err != nil {
				return err
			}
			if wait {
				if err := checkTimeout(timeout); err != nil {
					return err
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			name := args[1]
			if err := c.DeleteWorkload(cmd.Context(), name); err != nil {
				return err
			}
			if !wait {
				_, err := fmt.Fprintf(o.streams.Out, "workload/%s deletion requested\n", name)
				return err
			}
			if _, err := c.Wait(cmd.Context(), name, "deleted", timeout); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.streams.Out, "workload/%s deleted\n", name)
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the workload is gone")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return cmd
}

func newRetryCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "retry workload NAME",
		Short: "Reset a failed workload's retries and place it again",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workloadOnly("retry", args); err != nil {
				return err
			}
			return o.runRetry(cmd, args[1])
		},
	}
}

func (o *options) runRetry(cmd *cobra.Command, name string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := c.RetryWorkload(cmd.Context(), name)
	if err != nil {
		return err
	}
	if o.structured() {
		return printObject(o.streams.Out, o.output, v)
	}
	_, err = fmt.Fprintf(o.streams.Out, "workload/%s retry requested\n", name)
	return err
}

// newWorkloadCommand groups verbs on one workload: `workload retry NAME`
// is `retry workload NAME`.
func newWorkloadCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workload",
		Aliases: []string{"workloads", "wl"},
		Short:   "Act on a workload",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "retry NAME",
		Short: "Reset a failed workload's retries and place it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runRetry(cmd, args[0])
		},
	})
	return cmd
}

// newNodeCommand groups verbs on one node: cordon, uncordon, drain.
func newNodeCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "node",
		Aliases: []string{"nodes", "no"},
		Short:   "Cordon, uncordon or drain a node",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cordon := func(use, short, done string, call func(c *client.Client, cmd *cobra.Command, id string) (*persysv1.Node, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				defer c.Close()
				n, err := call(c, cmd, args[0])
				if err != nil {
					return err
				}
				if o.structured() {
					return printObject(o.streams.Out, o.output, n)
				}
				_, err = fmt.Fprintf(o.streams.Out, "node/%s %s\n", n.GetId(), done)
				return err
			},
		}
	}
	cmd.AddCommand(
		cordon("cordon", "Stop new placements on a node; what runs there stays", "cordoned",
			func(c *client.Client, cmd *cobra.Command, id string) (*persysv1.Node, error) {
				return c.CordonNode(cmd.Context(), id)
			}),
		cordon("uncordon", "Allow placements on a node again", "uncordoned",
			func(c *client.Client, cmd *cobra.Command, id string) (*persysv1.Node, error) {
				return c.UncordonNode(cmd.Context(), id)
			}),
		newDrainCommand(o),
	)
	return cmd
}

func newDrainCommand(o *options) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain ID",
		Short: "Cordon a node and move its workloads to other nodes",
		Long: "Cordon the node and move each of its workloads to another node; the old copy is removed only\n" +
			"once the new one runs. Waits up to --timeout, then prints where each workload went, or why it\n" +
			"could not move. Exits with status 1 unless every workload moved; the node stays cordoned.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTimeout(timeout); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.DrainNode(cmd.Context(), args[0], timeout)
			if err != nil {
				return err
			}
			if o.structured() {
				err = printObject(o.streams.Out, o.output, resp)
			} else {
				err = printDrain(o.streams.Out, resp)
			}
			if err != nil {
				return err
			}
			if !resp.GetComplete() {
				unmoved := 0
				for _, r := range resp.GetWorkloads() {
					if r.GetResult() != "moved" {
						unmoved++
					}
				}
				return fmt.Errorf("drain of node %s incomplete: %d of %d workloads did not move within %s", args[0], unmoved, len(resp.GetWorkloads()), timeout)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", client.DefaultDrainTimeout, "how long to wait for the workloads to move")
	return cmd
}

func (o *options) runLeader(cmd *cobra.Command) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Leader(cmd.Context())
	if err != nil {
		return err
	}
	if o.structured() {
		return printObject(o.streams.Out, o.output, info)
	}
	return printLeader(o.streams.Out, info)
}

func newClusterCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Cluster-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "summary",
		Short: "Nodes, workloads by state, capacity and allocation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := c.Summary(cmd.Context())
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, s)
			}
			return printSummary(o.streams.Out, s)
		},
	}, &cobra.Command{
		Use:   "leader",
		Short: "The scheduler leader's id and address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.runLeader(cmd)
		},
	})
	return cmd
}

func newEventsCommand(o *options) *cobra.Command {
	var (
		workload string
		limit    int
		typ      string
		follow   bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List recent events, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("invalid --limit %d: must not be negative", limit)
			}
			if follow {
				if limit != 0 {
					return fmt.Errorf("--limit does not apply to --follow (it starts with the newest 100)")
				}
				return o.watch(cmd, "events", client.WatchOptions{Workload: workload, Type: typ})
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.ListEventsOfType(cmd.Context(), workload, typ, limit)
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, list)
			}
			if strings.EqualFold(typ, "audit") {
				return printAuditTable(o.streams.Out, list.GetEvents(), o.now())
			}
			return printEventsTable(o.streams.Out, list.GetEvents(), o.now(), "")
		},
	}
	cmd.Flags().StringVar(&workload, "workload", "", "only events of this workload")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (0: the gateway's default)")
	cmd.Flags().StringVar(&typ, "type", "", "only events of this type, e.g. audit (who changed what, allowed or denied)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "after the newest events, print each new one until interrupted")
	return cmd
}

// runGet lists or shows services, workloads or nodes (kind) once.
func (o *options) runGet(cmd *cobra.Command, kind string, args []string, sel map[string]string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	if kind == "service" {
		name := ""
		if len(args) == 2 {
			name = args[1]
		}
		return o.getServices(cmd, c, name)
	}
	ctx, now := cmd.Context(), o.now()
	switch {
	case kind == "workload" && len(args) == 1:
		list, err := c.ListWorkloadsSelector(ctx, sel)
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, list)
		}
		return printWorkloads(o.streams.Out, o.output, list.GetWorkloads(), now)
	case kind == "workload":
		v, err := c.GetWorkload(ctx, args[1], false)
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, v)
		}
		return printWorkloads(o.streams.Out, o.output, []*persysv1.WorkloadView{v}, now)
	case len(args) == 1:
		list, err := c.ListNodes(ctx)
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, list)
		}
		return printNodes(o.streams.Out, o.output, list.GetNodes(), now)
	default:
		n, err := c.GetNode(ctx, args[1])
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, n)
		}
		return printNodes(o.streams.Out, o.output, []*persysv1.Node{n}, now)
	}
}
