package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// ledgerFile is the allocation record inside Config.DataDir.
const ledgerFile = "allocations.json"

// allocation is what one workload on the node was admitted with.
type allocation struct {
	UID         string `json:"uid"`
	Revision    uint64 `json:"revision"`
	CPUMillis   int64  `json:"cpu_millis"`
	MemoryBytes int64  `json:"memory_bytes"`
	DiskBytes   int64  `json:"disk_bytes"`
	// Ports are the host ports it publishes: bound by its own runtime,
	// not by something else (usedHostPorts).
	Ports []allocPort `json:"ports,omitempty"`
	// Health is what the health checks need of the spec (healthSpec),
	// so that they resume after an agent restart; nil without checks.
	Health []byte `json:"health,omitempty"`

	// seq is the ledger's change counter at the entry's last change.
	seq uint64
}

func (al *allocation) setResources(r *persysv1.Resources) {
	al.CPUMillis, al.MemoryBytes, al.DiskBytes = r.GetCpuMillis(), r.GetMemoryBytes(), r.GetDiskBytes()
}

// ledger records the resource requests of the workloads the node runs, for
// admission. The runtimes stay the ground truth of what runs: entries of
// workloads the runtimes no longer report are pruned. With a directory the
// record survives agent restarts.
type ledger struct {
	path string // "" keeps the record in memory

	mu      sync.Mutex
	entries map[string]allocation
	seq     uint64 // counts changes
}

func openLedger(dir string) (*ledger, error) {
	l := &ledger{entries: map[string]allocation{}}
	if dir == "" {
		return l, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	l.path = filepath.Join(dir, ledgerFile)
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("read allocation record: %w", err)
	}
	if err := json.Unmarshal(b, &l.entries); err != nil {
		return nil, fmt.Errorf("read allocation record %s: %w", l.path, err)
	}
	if l.entries == nil {
		l.entries = map[string]allocation{}
	}
	return l, nil
}

// saveLocked writes the record atomically; l.mu is held.
func (l *ledger) saveLocked() error {
	if l.path == "" {
		return nil
	}
	b, err := json.Marshal(l.entries)
	if err != nil {
		return err
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write allocation record: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("write allocation record: %w", err)
	}
	return nil
}

func (l *ledger) get(name string) (allocation, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[name]
	return e, ok
}

func (l *ledger) totalLocked() (cpu, mem, disk int64) {
	for _, e := range l.entries {
		cpu += e.CPUMillis
		mem += e.MemoryBytes
		disk += e.DiskBytes
	}
	return cpu, mem, disk
}

// total is the sum of the recorded requests.
func (l *ledger) total() *persysv1.Resources {
	l.mu.Lock()
	defer l.mu.Unlock()
	cpu, mem, disk := l.totalLocked()
	return &persysv1.Resources{CpuMillis: cpu, MemoryBytes: mem, DiskBytes: disk}
}

// refusal says which resource an admission would push over the threshold.
type refusal struct {
	resource             string
	requested, allocated int64 // allocated: by the other workloads
	capacity             int64
	threshold            float64
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%s: requested %d with %d allocated would exceed %.0f%% of capacity %d",
		r.resource, r.requested, r.allocated, r.threshold*100, r.capacity)
}

// allocatable is what admit lets the node's requests reach: threshold of
// the CPU and memory capacity, rounded down (for integer totals the same
// test as admit's), and the whole disk. The scheduler places against it,
// so that it never sends work this node would refuse.
func allocatable(capacity *persysv1.Resources, threshold float64) *persysv1.Resources {
	return &persysv1.Resources{
		CpuMillis:   int64(math.Floor(threshold * float64(capacity.GetCpuMillis()))),
		MemoryBytes: int64(math.Floor(threshold * float64(capacity.GetMemoryBytes()))),
		DiskBytes:   capacity.GetDiskBytes(),
	}
}

// admit decides whether the node may hold the workloads totalling after
// instead of before. A resource blocks only when the change raises its
// total beyond threshold*capacity, so re-applies and shrinking updates
// always pass. It is pure.
func admit(beforeCPU, beforeMem, afterCPU, afterMem, wantCPU, wantMem int64, capacity *persysv1.Resources, threshold float64) *refusal {
	check := func(resource string, before, after, want, capa int64) *refusal {
		if capa <= 0 || after <= before || float64(after) <= threshold*float64(capa) {
			return nil
		}
		return &refusal{resource: resource, requested: want, allocated: after - want, capacity: capa, threshold: threshold}
	}
	if r := check("cpu_millis", beforeCPU, afterCPU, wantCPU, capacity.GetCpuMillis()); r != nil {
		return r
	}
	return check("memory_bytes", beforeMem, afterMem, wantMem, capacity.GetMemoryBytes())
}

// reserve records want for name, replacing its previous allocation, when
// the node's utilization allows it (checked only when check is set). It
// returns the previous entry for restore.
func (l *ledger) reserve(name string, want allocation, capacity *persysv1.Resources, threshold float64, check bool) (allocation, bool, *refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, had := l.entries[name]
	if check {
		cpu, mem, _ := l.totalLocked()
		afterCPU := cpu - prev.CPUMillis + want.CPUMillis
		afterMem := mem - prev.MemoryBytes + want.MemoryBytes
		if r := admit(cpu, mem, afterCPU, afterMem, want.CPUMillis, want.MemoryBytes, capacity, threshold); r != nil {
			return prev, had, r
		}
	}
	l.seq++
	want.seq = l.seq
	l.entries[name] = want
	_ = l.saveLocked() // the record is advisory; the runtimes are the truth
	return prev, had, nil
}

// touch marks the entry of name as changed now, so that a prune based on a
// listing taken before the change keeps it.
func (l *ledger) touch(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.entries[name]; ok {
		l.seq++
		e.seq = l.seq
		l.entries[name] = e
	}
}

// mark returns the change counter; take it before listing the runtimes.
func (l *ledger) mark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// restore puts back what reserve replaced.
func (l *ledger) restore(name string, prev allocation, had bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if had {
		l.seq++
		prev.seq = l.seq
		l.entries[name] = prev
	} else {
		delete(l.entries, name)
	}
	_ = l.saveLocked()
}

// remove drops the entry of name; with uid only when it matches.
func (l *ledger) remove(name, uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[name]
	if !ok || (uid != "" && e.UID != uid) {
		return
	}
	delete(l.entries, name)
	_ = l.saveLocked()
}

// release zeroes the entries of workloads that a listing taken after mark
// reported FAILED and that did not change since: nothing of them runs, so
// they hold no CPU, memory, disk or ports against admission (a workload
// that failed for good would otherwise keep the node's capacity for as
// long as its container is kept). A re-apply reserves them again, checked.
func (l *ledger) release(failed map[string]bool, mark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	for name := range failed {
		e, ok := l.entries[name]
		if !ok || e.seq > mark || (e.CPUMillis == 0 && e.MemoryBytes == 0 && e.DiskBytes == 0 && len(e.Ports) == 0) {
			continue
		}
		e.CPUMillis, e.MemoryBytes, e.DiskBytes, e.Ports = 0, 0, 0, nil
		l.entries[name] = e
		changed = true
	}
	if changed {
		_ = l.saveLocked() // advisory, as in reserve
	}
}

// prune drops the entries of workloads that no runtime reported in a
// listing taken after mark and that did not change since.
func (l *ledger) prune(present map[string]bool, mark uint64, log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gone []string
	for name, e := range l.entries {
		if !present[name] && e.seq <= mark {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return
	}
	sort.Strings(gone)
	for _, name := range gone {
		delete(l.entries, name)
	}
	if err := l.saveLocked(); err != nil {
		log.Warn("save allocation record", "err", err)
	}
	log.Info("released allocations of workloads no runtime reports", "workloads", gone)
}
