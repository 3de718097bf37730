package compose

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/events"

	"github.com/persys-dev/compute/internal/runtime"
)

// watchActions are the container events that can change a workload's state.
var watchActions = []events.Action{
	events.ActionStart, events.ActionDie, events.ActionStop, events.ActionKill,
	events.ActionOOM, events.ActionDestroy, events.ActionPause, events.ActionUnPause,
}

// Watch sends the workload name whenever a container of one of this
// node's compose projects starts, stops, dies or is removed, also behind
// the runtime's back. Each (re)subscription replays from the last event
// seen, so a name may come more than once. The stream reconnects with
// backoff until ctx ends; then the channel is closed.
func (r *Runtime) Watch(ctx context.Context) (<-chan string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("compose watch: %w", err)
	}
	out := make(chan string, 64)
	go r.watchLoop(ctx, time.Now(), out)
	return out, nil
}

func (r *Runtime) watchLoop(ctx context.Context, since time.Time, out chan<- string) {
	defer close(out)
	const (
		minBackoff = 100 * time.Millisecond
		maxBackoff = 5 * time.Second
	)
	backoff := minBackoff
	f := make(client.Filters).Add("type", string(events.ContainerEventType)).Add("label", runtime.LabelManaged+"=true").Add("label", api.ProjectLabel)
	if r.cfg.NodeID != "" {
		f.Add("label", runtime.LabelNode+"="+r.cfg.NodeID)
	}
	for _, a := range watchActions {
		f.Add("event", string(a))
	}
	for {
		err := r.watchOnce(ctx, f, &since, out, func() { backoff = minBackoff })
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("engine event stream broke; reconnecting", "error", err, "backoff", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (r *Runtime) watchOnce(ctx context.Context, f client.Filters, since *time.Time, out chan<- string, healthy func()) error {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev := r.cli.Events(streamCtx, client.EventsListOptions{Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()), Filters: f})
	msgs, errs := ev.Messages, ev.Err
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case m := <-msgs:
			healthy()
			if m.TimeNano > 0 {
				*since = time.Unix(0, m.TimeNano)
			}
			name := m.Actor.Attributes[runtime.LabelWorkload]
			if name == "" || !r.cfg.Cluster.Owns(m.Actor.Attributes[runtime.LabelCluster]) {
				continue
			}
			select {
			case out <- name:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

var _ runtime.Watcher = (*Runtime)(nil)
