package cli

// Services: apply of kind: Service documents, get/describe/delete of
// services, scale, and the rollout verbs.

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/manifest"
)

// splitServices separates the kind: Service documents of a manifest
// stream from the rest, which it joins again as a stream (nil when none
// is left). ok is false when the stream holds no service.
func splitServices(data []byte) (services [][]byte, rest []byte, ok bool) {
	docs, err := manifest.SplitDocuments(data)
	if err != nil {
		return nil, data, false
	}
	var others [][]byte
	for _, d := range docs {
		if manifest.KindOf(d.Data) == manifest.KindService {
			services = append(services, d.Data)
		} else {
			others = append(others, d.Data)
		}
	}
	if len(services) == 0 {
		return nil, data, false
	}
	if len(others) > 0 {
		rest = bytes.Join(others, []byte("\n---\n"))
	}
	return services, rest, true
}

// applyServices applies each service document and prints one line each.
func (o *options) applyServices(cmd *cobra.Command, c *client.Client, docs [][]byte, wait bool, timeout time.Duration) error {
	var names []string
	for _, d := range docs {
		resp, err := c.ApplyService(cmd.Context(), d)
		if err != nil {
			return err
		}
		names = append(names, resp.GetService().GetService().GetName())
		if o.structured() {
			if err := printObject(o.streams.Out, o.output, resp); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(o.streams.Out, "service/%s %s\n", resp.GetService().GetService().GetName(), resp.GetResult())
	}
	if !wait {
		return nil
	}
	var failed []string
	for _, n := range names {
		if err := o.rolloutWait(cmd, c, n, timeout); err != nil {
			if cmd.Context().Err() != nil {
				return err
			}
			fmt.Fprintf(o.streams.Err, "%v\n", err)
			failed = append(failed, n)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rollout of %d service(s) did not complete: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

func phaseName(p persysv1.RolloutPhase) string {
	return strings.TrimPrefix(p.String(), "ROLLOUT_PHASE_")
}

func printServicesTable(w io.Writer, views []*persysv1.ServiceView, now time.Time) error {
	if len(views) == 0 {
		_, err := fmt.Fprintln(w, "No services.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "NAME", "REPLICAS", "READY", "UP-TO-DATE", "AVAILABLE", "REVISION", "PHASE", "AGE")
	for _, v := range views {
		s, p := v.GetService(), v.GetProgress()
		row(tw, "", s.GetName(), strconv.Itoa(int(s.GetSpec().GetReplicas())),
			fmt.Sprintf("%d/%d", p.GetReady(), p.GetReplicas()), strconv.Itoa(int(p.GetUpdated())),
			strconv.Itoa(int(p.GetAvailable())), strconv.FormatUint(p.GetRevision(), 10), phaseName(p.GetPhase()),
			age(now, s.GetCreatedAt()))
	}
	return tw.Flush()
}

func printDescribeService(w io.Writer, v *persysv1.ServiceView, revs []*persysv1.ServiceRevision, now time.Time) error {
	s, p := v.GetService(), v.GetProgress()
	spec, u := s.GetSpec(), s.GetSpec().GetUpdate()
	k := kv{w: w, width: 22}
	k.line("Name", s.GetName())
	k.line("Labels", joinMap(s.GetLabels()))
	k.line("Selector", joinMap(spec.GetSelector()))
	k.line("Created", stamp(now, s.GetCreatedAt()))
	k.line("Applied by", s.GetAppliedBy())
	k.line("Replicas", fmt.Sprintf("%d desired, %d total, %d ready, %d up-to-date, %d available",
		spec.GetReplicas(), p.GetReplicas(), p.GetReady(), p.GetUpdated(), p.GetAvailable()))
	k.line("Template", describeTemplate(spec.GetTemplate()))
	if sp := spec.GetSpread(); sp != nil {
		k.line("Spread", fmt.Sprintf("max %d per node, over node label %q", sp.GetMaxPerNode(), sp.GetNodeLabel()))
	}
	k.line("Update", fmt.Sprintf("maxUnavailable %d, maxSurge %d, minReady %ds, deadline %ds, autoRollback %v, canary %d, paused %v, drainDelay %s",
		u.GetMaxUnavailable(), u.GetMaxSurge(), u.GetMinReadySeconds(), u.GetProgressDeadlineSeconds(), u.GetAutoRollback(), u.GetCanary(), u.GetPaused(),
		time.Duration(u.GetDrainDelayMs())*time.Millisecond))
	k.line("Rollout", fmt.Sprintf("%s at revision %d (last good %d, before it %d)", phaseName(p.GetPhase()), p.GetRevision(),
		p.GetCurrentGoodRevision(), p.GetPreviousGoodRevision()))
	if p.GetMessage() != "" {
		k.line("Message", p.GetMessage())
	}
	k.head("Conditions")
	tw := newTable(w)
	row(tw, "  ", "TYPE", "STATUS", "SINCE", "REASON")
	for _, c := range p.GetConditions() {
		row(tw, "  ", c.GetType(), strconv.FormatBool(c.GetStatus()), age(now, c.GetLastTransition()), c.GetReason())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	k.head("Revisions")
	if err := printRevisionsTable(w, revs, now, "  "); err != nil {
		return err
	}
	k.line("Replicas", strings.Join(v.GetReplicas(), ", "))
	k.head("Events")
	return printEventsTable(w, v.GetEvents(), now, "  ")
}

func describeTemplate(t *persysv1.WorkloadSpec) string {
	typ := strings.ToLower(strings.TrimPrefix(t.GetType().String(), "WORKLOAD_TYPE_"))
	if img := t.GetContainer().GetImage(); img != "" {
		return typ + " " + img + ", " + resourcesLine(t.GetResources())
	}
	return typ + ", " + resourcesLine(t.GetResources())
}

func printRevisionsTable(w io.Writer, revs []*persysv1.ServiceRevision, now time.Time, indent string) error {
	if len(revs) == 0 {
		_, err := fmt.Fprintln(w, indent+"No revisions.")
		return err
	}
	tw := newTable(w)
	row(tw, indent, "REVISION", "HASH", "TEMPLATE", "BY", "AGE")
	for _, r := range revs {
		h := r.GetTemplateHash()
		if len(h) > 8 {
			h = h[:8]
		}
		row(tw, indent, strconv.FormatUint(r.GetNumber(), 10), h, describeTemplate(r.GetTemplate()), r.GetAppliedBy(), age(now, r.GetCreatedAt()))
	}
	return tw.Flush()
}

// getServices is `get services` and `get service NAME`.
func (o *options) getServices(cmd *cobra.Command, c *client.Client, name string) error {
	var views []*persysv1.ServiceView
	if name == "" {
		list, err := c.ListServices(cmd.Context())
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, list)
		}
		views = list.GetServices()
	} else {
		v, err := c.GetService(cmd.Context(), name, false)
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, v)
		}
		views = []*persysv1.ServiceView{v}
	}
	if o.output == FormatName {
		for _, v := range views {
			fmt.Fprintf(o.streams.Out, "service/%s\n", v.GetService().GetName())
		}
		return nil
	}
	return printServicesTable(o.streams.Out, views, o.now())
}

// describeService is `describe service NAME`.
func (o *options) describeService(cmd *cobra.Command, c *client.Client, name string) error {
	v, err := c.GetService(cmd.Context(), name, true)
	if err != nil {
		return err
	}
	if o.structured() {
		return printObject(o.streams.Out, o.output, v)
	}
	hist, err := c.RolloutHistory(cmd.Context(), name)
	if err != nil {
		return err
	}
	return printDescribeService(o.streams.Out, v, hist.GetRevisions(), o.now())
}

func newScaleCommand(o *options) *cobra.Command {
	var replicas int32 = -1
	cmd := &cobra.Command{
		Use:   "scale service NAME --replicas N",
		Short: "Set a service's replicas",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kind, err := kindOf(args[0]); err != nil || kind != "service" {
				return fmt.Errorf("scale applies only to services: scale service NAME --replicas N")
			}
			if !cmd.Flags().Changed("replicas") {
				return fmt.Errorf("--replicas is required")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.ScaleService(cmd.Context(), args[1], replicas)
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, v)
			}
			_, err = fmt.Fprintf(o.streams.Out, "service/%s scaled to %d\n", args[1], replicas)
			return err
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", -1, "how many replicas")
	return cmd
}

func newRolloutCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout status|history|undo|pause|resume|promote SERVICE",
		Short: "Follow and steer a service's rolling update",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	withClient := func(use, short string, run func(cmd *cobra.Command, c *client.Client, name string) error) *cobra.Command {
		return &cobra.Command{Use: use + " SERVICE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				defer c.Close()
				return run(cmd, c, args[0])
			}}
	}
	var (
		wait    bool
		timeout time.Duration
	)
	status := withClient("status", "Show where the service's update stands", func(cmd *cobra.Command, c *client.Client, name string) error {
		if !wait {
			return o.rolloutStatus(cmd, c, name)
		}
		if err := checkTimeout(timeout); err != nil {
			return err
		}
		return o.rolloutWait(cmd, c, name, timeout)
	})
	status.Flags().BoolVarP(&wait, "wait", "w", false, "follow the update until it completes, fails, pauses or waits for a promote")
	status.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait follows")
	cmd.AddCommand(status)
	cmd.AddCommand(withClient("history", "List the service's kept revisions", func(cmd *cobra.Command, c *client.Client, name string) error {
		h, err := c.RolloutHistory(cmd.Context(), name)
		if err != nil {
			return err
		}
		if o.structured() {
			return printObject(o.streams.Out, o.output, h)
		}
		return printRevisionsTable(o.streams.Out, h.GetRevisions(), o.now(), "")
	}))
	var to uint64
	undo := withClient("undo", "Return the service to an earlier revision (the previous one by default)", func(cmd *cobra.Command, c *client.Client, name string) error {
		v, err := c.RolloutUndo(cmd.Context(), name, to)
		return o.rolloutDone(v, err, name, "rolled back")
	})
	undo.Flags().Uint64Var(&to, "to-revision", 0, "the revision to return to (0: the one before the current)")
	cmd.AddCommand(undo)
	for _, op := range []struct{ name, short, done string }{
		{client.RolloutPause, "Pause the service's update", "paused"},
		{client.RolloutResume, "Resume the service's update", "resumed"},
		{client.RolloutPromote, "Let a canary update go on past its canaries", "promoted"},
	} {
		cmd.AddCommand(withClient(op.name, op.short, func(cmd *cobra.Command, c *client.Client, name string) error {
			v, err := c.RolloutOp(cmd.Context(), name, op.name)
			return o.rolloutDone(v, err, name, op.done)
		}))
	}
	return cmd
}

func (o *options) rolloutDone(v *persysv1.ServiceView, err error, name, done string) error {
	if err != nil {
		return err
	}
	if o.structured() {
		return printObject(o.streams.Out, o.output, v)
	}
	_, err = fmt.Fprintf(o.streams.Out, "service/%s %s\n", name, done)
	return err
}

// rolloutPoll is how often rollout status --wait looks again.
const rolloutPoll = time.Second

// rolloutWait prints the status each time it changes until the update
// settles (complete, failed, paused or awaiting promotion) or timeout.
func (o *options) rolloutWait(cmd *cobra.Command, c *client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		v, err := c.GetService(cmd.Context(), name, false)
		if err != nil {
			return err
		}
		// Settled only once the controller saw the current spec.
		settled := v.GetProgress().GetObservedGeneration() == v.GetService().GetGeneration() && settledPhase(v.GetProgress().GetPhase())
		if line := statusLine(name, v); line != last && !o.structured() {
			last = line
			fmt.Fprint(o.streams.Out, line)
		}
		if settled {
			return o.rolloutStatusOf(name, v)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rollout of service %s: still %s after %s", name, phaseName(v.GetProgress().GetPhase()), timeout)
		}
		t := time.NewTimer(rolloutPoll)
		select {
		case <-cmd.Context().Done():
			t.Stop()
			return cmd.Context().Err()
		case <-t.C:
		}
	}
}

func settledPhase(p persysv1.RolloutPhase) bool {
	switch p {
	case persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE, persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED,
		persysv1.RolloutPhase_ROLLOUT_PHASE_PAUSED, persysv1.RolloutPhase_ROLLOUT_PHASE_AWAITING_PROMOTION:
		return true
	}
	return false
}

func statusLine(name string, v *persysv1.ServiceView) string {
	p := v.GetProgress()
	line := fmt.Sprintf("service/%s revision %d: %s — %d of %d updated, %d ready, %d available\n", name, p.GetRevision(),
		phaseName(p.GetPhase()), p.GetUpdated(), v.GetService().GetSpec().GetReplicas(), p.GetReady(), p.GetAvailable())
	if p.GetMessage() != "" {
		line += p.GetMessage() + "\n"
	}
	return line
}

// rolloutStatusOf is the outcome of a settled wait: an error when failed.
func (o *options) rolloutStatusOf(name string, v *persysv1.ServiceView) error {
	if o.structured() {
		if err := printObject(o.streams.Out, o.output, v.GetProgress()); err != nil {
			return err
		}
	}
	if v.GetProgress().GetPhase() == persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED {
		return fmt.Errorf("rollout of service %s failed", name)
	}
	return nil
}

func (o *options) rolloutStatus(cmd *cobra.Command, c *client.Client, name string) error {
	v, err := c.GetService(cmd.Context(), name, false)
	if err != nil {
		return err
	}
	if o.structured() {
		return printObject(o.streams.Out, o.output, v.GetProgress())
	}
	fmt.Fprint(o.streams.Out, statusLine(name, v))
	return o.rolloutStatusOf(name, v)
}

// deleteService is `delete service NAME`.
func (o *options) deleteService(cmd *cobra.Command, name string, wait bool) error {
	if wait {
		return fmt.Errorf("--wait applies to workloads; a service's replicas go asynchronously (get services shows it until gone)")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.DeleteService(cmd.Context(), name); err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.streams.Out, "service/%s deletion requested\n", name)
	return err
}
