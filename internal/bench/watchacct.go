package bench

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The exactly-once accounting of the watchers scenario. The bench makes
// changes j = 0 … m-1 one after the other, from one goroutine, so etcd
// commits them in that order: change j sets the label changeLabel of
// workload names[(k0+j) mod len(names)] to k0+j and nothing else. Every
// watcher must then see, among its PUT and DELETE items, change j exactly
// once, after change j-1, at one position (revision, index) that every
// other watcher saw it at too; its items' positions must rise strictly.
// Other items (a later write to a changed workload, a status report) carry
// no fresh marker and are only counted.

// changeLabel is the label whose value numbers the bench's changes.
const changeLabel = "bench-watch-change"

// watchPos is an item's position in the stream: its etcd revision and
// its index within the revision.
type watchPos struct {
	rev int64
	idx int32
}

func (p watchPos) before(q watchPos) bool {
	return p.rev < q.rev || p.rev == q.rev && p.idx < q.idx
}

func (p watchPos) String() string { return fmt.Sprintf("%d/%d", p.rev, p.idx) }

// account is the shared ledger of one phase's changes and watchers.
type account struct {
	k0, m int
	names []string
	// submitted[j] is when change j was submitted (Unix nanoseconds).
	submitted []atomic.Int64
	// seen[j] counts the watchers that saw change j; complete receives j
	// when the last one did.
	seen     []atomic.Int32
	complete chan int
	watchers []*watchAcct

	mu    sync.Mutex
	first error
	// failed is closed at the first error.
	failed chan struct{}
}

// watchAcct is one watcher's side of the ledger, written by its reading
// goroutine only.
type watchAcct struct {
	id   int
	next int // the change it expects next
	last watchPos
	// recv[j] and pos[j]: when and at which position it saw change j.
	recv []int64
	pos  []watchPos
	// other counts PUT and DELETE items that carry no fresh marker.
	other int64
	// snapshot counts the SNAPSHOT items of its list (with WatchList).
	snapshot int
}

func newAccount(n, m, k0 int, names []string) *account {
	a := &account{k0: k0, m: m, names: names, submitted: make([]atomic.Int64, m), seen: make([]atomic.Int32, m),
		complete: make(chan int, m), failed: make(chan struct{})}
	for i := range n {
		a.watchers = append(a.watchers, &watchAcct{id: i, recv: make([]int64, m), pos: make([]watchPos, m)})
	}
	return a
}

// change returns the name and marker of change j.
func (a *account) change(j int) (name, marker string) {
	k := a.k0 + j
	return a.names[k%len(a.names)], strconv.Itoa(k)
}

// fail records the phase's first error and wakes whoever waits.
func (a *account) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.first == nil {
		a.first = err
		close(a.failed)
	}
}

func (a *account) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.first
}

// observe books a PUT or DELETE item that watcher w read at now: a
// workload name, its changeLabel value and its position.
func (a *account) observe(w *watchAcct, name, marker string, p watchPos, now time.Time) {
	if !w.last.before(p) {
		a.fail(fmt.Errorf("watcher %d: item at %s after one at %s: repeated or out of order", w.id, p, w.last))
		return
	}
	w.last = p
	k, err := strconv.Atoi(marker)
	if marker == "" || err != nil || k < a.k0+w.next {
		w.other++
		return
	}
	j := k - a.k0
	switch {
	case j >= a.m:
		a.fail(fmt.Errorf("watcher %d: change %d at %s: the bench made only %d", w.id, j, p, a.m))
		return
	case j != w.next:
		a.fail(fmt.Errorf("watcher %d: change %d at %s before change %d: lost or out of order", w.id, j, p, w.next))
		return
	}
	if want, _ := a.change(j); name != want {
		a.fail(fmt.Errorf("watcher %d: change %d at %s on workload %q, want %q", w.id, j, p, name, want))
		return
	}
	w.recv[j], w.pos[j] = now.UnixNano(), p
	w.next++
	if int(a.seen[j].Add(1)) == len(a.watchers) {
		a.complete <- j
	}
}

// check is the ledger's verdict once the phase ended: every watcher saw
// every change, at the position the first watcher saw it at. It returns
// how many watchers passed and the first failure.
func (a *account) check() (ok int, err error) {
	if err := a.err(); err != nil {
		return 0, err
	}
	ref := a.watchers[0]
	for _, w := range a.watchers {
		switch {
		case w.next != a.m:
			err = firstOf(err, fmt.Errorf("watcher %d saw %d of %d changes", w.id, w.next, a.m))
			continue
		case !slices.Equal(w.pos, ref.pos):
			err = firstOf(err, fmt.Errorf("watcher %d saw the changes at other positions than watcher %d", w.id, ref.id))
			continue
		}
		ok++
	}
	return ok, err
}

func firstOf(have, next error) error {
	if have != nil {
		return have
	}
	return next
}

// latencies returns every delivery's latency (submit → decoded by a
// watcher) and, per change, the latency to the last watcher.
func (a *account) latencies() (all, last []time.Duration) {
	all = make([]time.Duration, 0, a.m*len(a.watchers))
	last = make([]time.Duration, a.m)
	for _, w := range a.watchers {
		for j := range w.next {
			d := time.Duration(w.recv[j] - a.submitted[j].Load())
			all = append(all, d)
			last[j] = max(last[j], d)
		}
	}
	return all, last
}

// deliveries is how many change deliveries the watchers booked, and how
// many other items they read.
func (a *account) deliveries() (changes, other int64) {
	for _, w := range a.watchers {
		changes += int64(w.next)
		other += w.other
	}
	return changes, other
}
