package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/persys-dev/compute/internal/store"
)

// ProcFigures are one process's figures at the end of a run.
type ProcFigures struct {
	// Name says what the process ran: bench (the hollow nodes, and the
	// embedded etcd and scheduler unless they run elsewhere), scheduler,
	// etcd member NAME.
	Name string `json:"name"`
	SchedProcStats
}

// EtcdDB is the etcd database's size at the end of a run, as the
// maintenance Status of the store's first endpoint reports it.
type EtcdDB struct {
	DBSize      int64 `json:"db_size_bytes"`
	DBSizeInUse int64 `json:"db_size_in_use_bytes"`
	// QuotaBytes is the backend quota every member was started with.
	QuotaBytes int64 `json:"quota_bytes"`
}

// processes reads every process of the cluster: this one, the
// scheduler's and the etcd members'.
func (c *Cluster) processes() []ProcFigures {
	out := []ProcFigures{{Name: "bench", SchedProcStats: statsOfPID(os.Getpid())}}
	if c.proc != nil {
		out = append(out, ProcFigures{Name: "scheduler", SchedProcStats: c.proc.stats()})
	}
	if e := c.opts.Etcd; e != nil {
		for i, m := range e.members {
			out = append(out, ProcFigures{Name: "etcd member " + e.names[i], SchedProcStats: m.stats()})
		}
	}
	return out
}

// etcdDB reads the database size from the store.
func (c *Cluster) etcdDB(ctx context.Context) (EtcdDB, error) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := c.Store.DBStatus(sctx)
	if err != nil {
		return EtcdDB{}, err
	}
	return EtcdDB{DBSize: st.DBSize, DBSizeInUse: st.DBSizeInUse, QuotaBytes: c.quota()}, nil
}

// quota is the backend quota the members run with.
func (c *Cluster) quota() int64 {
	q := c.opts.EtcdQuotaBytes
	if c.opts.Etcd != nil {
		q = c.opts.Etcd.quota
	}
	if q <= 0 {
		q = store.DefaultQuotaBackendBytes
	}
	return q
}

// alarmEvery is how often the bench asks etcd for its alarms.
const alarmEvery = time.Second

// watchAlarms fails the run once etcd raises its NOSPACE alarm: the
// database hit its quota and etcd takes no more writes, so waiting for
// convergence would only wait out the timeout.
func (c *Cluster) watchAlarms(ctx context.Context) {
	c.goBackground("etcd alarms", func() error {
		t := time.NewTicker(alarmEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := c.Store.Client().AlarmList(actx)
			cancel()
			if err != nil {
				continue // a slow etcd answers later; a dead one fails elsewhere
			}
			for _, a := range resp.Alarms {
				if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
					return c.noSpace(ctx)
				}
			}
		}
	})
}

// noSpace says that etcd ran out of its quota, and how far the database got.
func (c *Cluster) noSpace(ctx context.Context) error {
	size := ""
	if db, err := c.etcdDB(context.WithoutCancel(ctx)); err == nil {
		size = fmt.Sprintf(" at %s (%s in use)", mib(db.DBSize), mib(db.DBSizeInUse))
	}
	return fmt.Errorf("etcd: database space exceeded (alarm NOSPACE)%s: the backend quota is %s; raise --etcd-quota", size, mib(c.quota()))
}

// mib formats bytes in MiB.
func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

// fdCount counts a process's open descriptors (0 when unreadable).
func fdCount(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
