// Package bench holds the scenarios of `persys bench`: each starts real
// parts (embedded etcd, the scheduler) in this process, drives them, and
// returns figures for a table and a JSON report.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

// SoakOptions configure the bounded-state soak.
type SoakOptions struct {
	// Cycles of create + delete (default 10,000).
	Cycles int
	// Every is how often (in cycles) a sample is taken (default 1,000).
	Every int
	// CompactionRetention of the embedded etcd (default "1m").
	CompactionRetention string
	// EventTTL bounds event retention (default 1m).
	EventTTL time.Duration
	// Dir holds the etcd data; empty uses a temporary folder.
	Dir      string
	Progress io.Writer
}

// SoakSample is the state of etcd after some cycles.
type SoakSample struct {
	Cycles      int     `json:"cycles"`
	ElapsedSec  float64 `json:"elapsed_s"`
	Revision    int64   `json:"revision"`
	DBSize      int64   `json:"db_size_bytes"`
	DBSizeInUse int64   `json:"db_size_in_use_bytes"`
	Keys        int64   `json:"keys"`
}

// SoakReport is the soak's result.
type SoakReport struct {
	Cycles  int          `json:"cycles"`
	Samples []SoakSample `json:"samples"`
	// KeysLeft counts keys under the prefix at the end, events excepted
	// (they expire by lease): it must be 0.
	KeysLeft int64 `json:"keys_left"`
}

// Soak creates and deletes one workload Cycles times through the scheduler
// (its real API, its real etcd writes) and samples etcd's size, so that
// unbounded growth shows.
func Soak(ctx context.Context, o SoakOptions) (*SoakReport, error) {
	if o.Cycles <= 0 {
		o.Cycles = 10000
	}
	if o.Every <= 0 {
		o.Every = 1000
	}
	if o.CompactionRetention == "" {
		o.CompactionRetention = "1m"
	}
	if o.EventTTL <= 0 {
		o.EventTTL = time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "persys-soak-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	etcdTLS, err := embeddedTLS(dir, nil)
	if err != nil {
		return nil, err
	}
	emb, err := store.StartEmbedded(store.EmbeddedOptions{Dir: filepath.Join(dir, "etcd"), TLS: etcdTLS, CompactionRetention: o.CompactionRetention})
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	cli := emb.LocalClient()
	defer cli.Close()
	st := store.New(cli, store.Options{EventTTL: o.EventTTL, Logger: quiet})
	sched, err := scheduler.New(scheduler.Config{Store: st, Logger: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	for sched.Ready() != nil {
		select {
		case err := <-done:
			return nil, fmt.Errorf("scheduler stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	svc := sched.Service()
	spec := &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20},
		Container:    &persysv1.ContainerSpec{Image: "persys-hello:latest", RestartPolicy: "no"},
	}
	rep := &SoakReport{Cycles: o.Cycles}
	start := time.Now()
	sample := func(n int) error {
		status, err := st.DBStatus(ctx)
		if err != nil {
			return err
		}
		keys, _, err := st.CountKeys(ctx)
		if err != nil {
			return err
		}
		s := SoakSample{Cycles: n, ElapsedSec: time.Since(start).Seconds(), Revision: status.Revision,
			DBSize: status.DBSize, DBSizeInUse: status.DBSizeInUse, Keys: keys}
		rep.Samples = append(rep.Samples, s)
		fmt.Fprintf(o.Progress, "soak: %6d cycles  %6.1fs  revision %8d  db %7.1f MiB  in use %7.1f MiB  keys %d\n",
			n, s.ElapsedSec, s.Revision, float64(s.DBSize)/(1<<20), float64(s.DBSizeInUse)/(1<<20), s.Keys)
		return nil
	}
	if err := sample(0); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Cycles; i++ {
		name := fmt.Sprintf("soak-%d", i%64)
		if _, err := svc.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec}); err != nil {
			return nil, fmt.Errorf("cycle %d: apply: %w", i, err)
		}
		if _, err := svc.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name}); err != nil {
			return nil, fmt.Errorf("cycle %d: delete: %w", i, err)
		}
		// Wait until the scheduler removed it, so cycles do not pile up.
		for {
			if _, err := svc.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name}); err != nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		if i%o.Every == 0 {
			if err := sample(i); err != nil {
				return nil, err
			}
		}
	}
	if _, rep.KeysLeft, err = st.CountKeys(ctx); err != nil {
		return nil, err
	}
	cancel()
	<-done
	return rep, nil
}
