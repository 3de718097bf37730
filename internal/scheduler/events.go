package scheduler

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/store"
)

// eventWriter writes events off the hot path: a decision never waits for
// its event to reach etcd. Events are best effort by design (they expire);
// when the buffer is full the event is dropped and counted in the log.
// eventBatchMax bounds the events written in one AppendEvents call.
const eventBatchMax = 512

type eventWriter struct {
	store *store.Store
	log   *slog.Logger
	ch    chan *persysv1.Event
}

func newEventWriter(st *store.Store, log *slog.Logger) *eventWriter {
	return &eventWriter{store: st, log: log, ch: make(chan *persysv1.Event, 4096)}
}

// Add queues ev with type t (the only way an event gets its type, so that
// every type emitted is one of model.EventTypes).
func (w *eventWriter) Add(t model.EventType, ev *persysv1.Event) {
	ev.Type = string(t)
	if ev.Time == nil {
		ev.Time = timestamppb.Now()
	}
	select {
	case w.ch <- ev:
	default:
		w.log.Warn("event dropped: writer queue full", "type", ev.GetType(), "workload", ev.GetWorkload())
	}
}

func (w *eventWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// Flush what is queued, briefly.
			fctx, cancel := context.WithTimeout(context.Background(), time.Second)
			for batch := w.backlog(nil); len(batch) > 0 && fctx.Err() == nil; batch = w.backlog(nil) {
				_ = w.store.AppendEvents(fctx, batch)
			}
			cancel()
			return
		case ev := <-w.ch:
			// Take the backlog too: one transaction for a burst.
			batch := w.backlog([]*persysv1.Event{ev})
			if err := w.store.AppendEvents(ctx, batch); err != nil && ctx.Err() == nil {
				w.log.Warn("write events", "events", len(batch), "first_type", batch[0].GetType(),
					"first_workload", batch[0].GetWorkload(), "err", err)
			}
		}
	}
}

// backlog appends what is queued now to batch, up to eventBatchMax.
func (w *eventWriter) backlog(batch []*persysv1.Event) []*persysv1.Event {
	for len(batch) < eventBatchMax {
		select {
		case ev := <-w.ch:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}
