package cli

// get --watch and events --follow: the table, then one row per change in
// the same columns (a deleted object shows state DELETED), until
// interrupted. The client resumes across disconnects from the last
// revision seen, and lists again when that revision is too old.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
)

// streamTable prints rows whose columns keep the widths of the first
// table (widening when a cell is longer), as rows arrive one at a time.
type streamTable struct {
	w      io.Writer
	header []string
	widths []int
	// held rows of the first table, printed at its end.
	held    [][]string
	printed bool
}

// minStreamWidth keeps rows that come after an empty list readable.
const minStreamWidth = 9

func newStreamTable(w io.Writer, header ...string) *streamTable {
	t := &streamTable{w: w, header: header, widths: make([]int, len(header))}
	for i := range t.widths {
		t.widths[i] = minStreamWidth
	}
	t.fit(header)
	return t
}

func (t *streamTable) fit(cells []string) {
	for i, c := range cells {
		t.widths[i] = max(t.widths[i], len(c))
	}
}

// add holds a row of the first table, or prints a later one at once.
func (t *streamTable) add(cells []string) error {
	for i, c := range cells {
		if c == "" {
			c = none
		}
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	t.fit(cells)
	if !t.printed {
		t.held = append(t.held, cells)
		return nil
	}
	return t.line(cells)
}

// flush ends the first table: the header and the held rows.
func (t *streamTable) flush() error {
	if t.printed {
		return nil
	}
	t.printed = true
	rows := append([][]string{t.header}, t.held...)
	t.held = nil
	for _, r := range rows {
		if err := t.line(r); err != nil {
			return err
		}
	}
	return nil
}

func (t *streamTable) line(cells []string) error {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		fmt.Fprintf(&b, "%-*s", t.widths[i]+3, c)
	}
	_, err := fmt.Fprintln(t.w, b.String())
	return err
}

// watchColumns are a kind's header and the cells of one item.
type watchColumns struct {
	header []string
	cells  func(it client.WatchItem, now time.Time) []string
}

var watchKinds = map[string]watchColumns{
	"workloads": {[]string{"NAME", "TYPE", "STATE", "NODE", "REVISION", "REASON", "AGE"}, workloadWatchCells},
	"nodes":     {[]string{"ID", "STATE", "CPU", "MEM", "RUNTIMES", "AGE"}, nodeWatchCells},
	"services":  {[]string{"NAME", "REPLICAS", "READY", "UP-TO-DATE", "AVAILABLE", "REVISION", "PHASE", "AGE"}, serviceWatchCells},
	"events":    {[]string{"AGE", "TYPE", "WORKLOAD", "NODE", "REASON", "MESSAGE"}, eventWatchCells},
}

func workloadWatchCells(it client.WatchItem, now time.Time) []string {
	v := it.Workload
	wl := v.GetWorkload()
	state := workloadState(v)
	if it.Type == client.WatchDelete {
		state = "DELETED"
	}
	return []string{wl.GetName(), enumName(wl.GetSpec().GetType()), state, workloadNode(v),
		strconv.FormatUint(wl.GetRevision(), 10), enumName(v.GetStatus().GetReason()), age(now, wl.GetCreatedAt())}
}

func nodeWatchCells(it client.WatchItem, now time.Time) []string {
	n := it.Node
	state := nodeState(n)
	if it.Type == client.WatchDelete {
		state = "DELETED"
	}
	// The cells of get nodes: a row reads the same in both.
	cpu, mem := nodeAllocation(n)
	return []string{n.GetId(), state, cpu, mem, runtimes(n), age(now, n.GetRegisteredAt())}
}

func serviceWatchCells(it client.WatchItem, now time.Time) []string {
	s, p := it.Service.GetService(), it.Service.GetProgress()
	phase := phaseName(p.GetPhase())
	if it.Type == client.WatchDelete {
		phase = "DELETED"
	}
	return []string{s.GetName(), strconv.Itoa(int(s.GetSpec().GetReplicas())), fmt.Sprintf("%d/%d", p.GetReady(), p.GetReplicas()),
		strconv.Itoa(int(p.GetUpdated())), strconv.Itoa(int(p.GetAvailable())), strconv.FormatUint(p.GetRevision(), 10),
		phase, age(now, s.GetCreatedAt())}
}

func eventWatchCells(it client.WatchItem, now time.Time) []string {
	e := it.Event
	return []string{age(now, e.GetTime()), e.GetType(), e.GetWorkload(), e.GetNodeId(), enumName(e.GetReason()), e.GetMessage()}
}

// watch runs get KIND --watch or events --follow until interrupted.
func (o *options) watch(cmd *cobra.Command, kind string, opts client.WatchOptions) error {
	if o.output != FormatTable && o.output != FormatWide {
		return fmt.Errorf("--watch prints tables only; -o %s is not supported with it", o.output)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	cols := watchKinds[kind]
	t := newStreamTable(o.streams.Out, cols.header...)
	return c.Watch(cmd.Context(), kind, opts, func(it client.WatchItem) error {
		switch it.Type {
		case client.WatchRelist:
			t = newStreamTable(o.streams.Out, cols.header...)
			_, err := fmt.Fprintln(o.streams.Err, "watch: the position is too old to resume; listing again")
			return err
		case client.WatchBookmark:
			return t.flush()
		}
		return t.add(cols.cells(it, o.now()))
	})
}

// getWatch is get KIND --watch.
func (o *options) getWatch(cmd *cobra.Command, kind string, args []string, sel map[string]string) error {
	if len(args) > 1 {
		return fmt.Errorf("--watch lists a kind; it takes no name")
	}
	switch kind {
	case "workload", "node", "service":
		return o.watch(cmd, kind+"s", client.WatchOptions{Selector: sel})
	}
	return fmt.Errorf("--watch applies to workloads, nodes and services")
}
