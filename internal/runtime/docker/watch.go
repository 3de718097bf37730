package docker

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/moby/moby/api/types/events"

	"github.com/persys-dev/compute/internal/runtime"
)

// watchActions are the container events that can change a workload's state.
var watchActions = []events.Action{
	events.ActionStart, events.ActionDie, events.ActionStop, events.ActionKill,
	events.ActionOOM, events.ActionDestroy, events.ActionPause, events.ActionUnPause,
}

// Watch sends the workload name whenever one of this runtime's containers
// starts, stops, dies, is killed, runs out of memory or is removed,
// including changes made behind the runtime's back. Events that happen
// after Watch is called are not lost to a slow subscription or a broken
// stream: each (re)subscription asks the engine to replay from the last
// event seen, so a name may be sent more than once. The stream reconnects
// with backoff until ctx ends; then the channel is closed.
func (r *Runtime) Watch(ctx context.Context) (<-chan string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("docker watch: %w", err)
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
	f := r.managedFilter("", "")
	f.Add("type", string(events.ContainerEventType))
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

// watchOnce follows one event stream until it fails or ctx ends. since
// advances with every event seen; healthy is called for each event.
func (r *Runtime) watchOnce(ctx context.Context, f client.Filters, since *time.Time, out chan<- string, healthy func()) error {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev := r.cli.Events(streamCtx, client.EventsListOptions{Since: sinceParam(*since), Filters: f})
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
			if name == "" || !r.cluster.Owns(m.Actor.Attributes[runtime.LabelCluster]) {
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

// sinceParam renders t the way the events endpoint accepts: seconds and
// nanoseconds since the epoch.
func sinceParam(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
