package scheduler

import (
	"testing"
	"time"
)

// queueWait bounds every blocking wait of the queue tests; it is a deadline
// for a condition, never a timing assertion.
const queueWait = 10 * time.Second

// getAsync runs q.Get in a goroutine and delivers its result.
func getAsync(q *queue) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		k, ok := q.Get()
		ch <- getResult{k, ok}
	}()
	return ch
}

type getResult struct {
	key string
	ok  bool
}

// mustGet takes the next key, failing the test when none comes in time.
func mustGet(t *testing.T, q *queue) string {
	t.Helper()
	select {
	case r := <-getAsync(q):
		if !r.ok {
			t.Fatal("Get reported a closed queue")
		}
		return r.key
	case <-time.After(queueWait):
		t.Fatalf("no key within %s", queueWait)
		return ""
	}
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, q *queue)
	}{
		{"the low lane waits for the first and yields a key added to it", func(t *testing.T, q *queue) {
			q.AddLow("r1")
			q.AddLow("r2")
			q.AddLow("r1")
			q.Add("urgent")
			q.Add("r2") // due now: moves to the first lane
			for _, want := range []string{"urgent", "r2", "r1"} {
				k := mustGet(t, q)
				if k != want {
					t.Fatalf("got %q, want %q (first lane, then the low lane, each key once)", k, want)
				}
				q.Done(k)
			}
			q.Add("busy")
			k := mustGet(t, q)
			q.AddLow(k) // being processed: nothing more to do
			q.Done(k)
			select {
			case r := <-getAsync(q):
				t.Fatalf("got %q after a low add of a key in process; want nothing", r.key)
			case <-time.After(100 * time.Millisecond):
			}
			q.Close()
		}},
		{"add de-duplicates a waiting key", func(t *testing.T, q *queue) {
			q.Add("a")
			q.Add("b")
			q.Add("a")
			q.Add("a")
			if n := q.Len(); n != 2 {
				t.Fatalf("Len = %d after adding a, b, a, a; want 2", n)
			}
			if k := mustGet(t, q); k != "a" {
				t.Fatalf("first key %q, want a (insertion order)", k)
			}
			if k := mustGet(t, q); k != "b" {
				t.Fatalf("second key %q, want b", k)
			}
			if n := q.Len(); n != 0 {
				t.Fatalf("Len = %d after taking both keys, want 0", n)
			}
		}},
		{"a key added while processing is processed again after Done", func(t *testing.T, q *queue) {
			q.Add("a")
			k := mustGet(t, q)
			q.Add(k) // while a worker holds it
			q.Add(k)
			if n := q.Len(); n != 0 {
				t.Fatalf("Len = %d while the key is processed, want 0 (never handed out twice at once)", n)
			}
			q.Done(k)
			if n := q.Len(); n != 1 {
				t.Fatalf("Len = %d after Done, want 1 (queued again once)", n)
			}
			if k2 := mustGet(t, q); k2 != "a" {
				t.Fatalf("got %q after Done, want a", k2)
			}
			q.Done("a")
			if n := q.Len(); n != 0 {
				t.Fatalf("Len = %d after the second Done, want 0", n)
			}
		}},
		{"a key not added again is not requeued by Done", func(t *testing.T, q *queue) {
			q.Add("a")
			q.Done(mustGet(t, q))
			if n := q.Len(); n != 0 {
				t.Fatalf("Len = %d, want 0", n)
			}
		}},
		{"AddAfter fires", func(t *testing.T, q *queue) {
			q.AddAfter("later", 20*time.Millisecond)
			if k := mustGet(t, q); k != "later" {
				t.Fatalf("got %q, want later", k)
			}
		}},
		{"AddAfter with no delay queues at once", func(t *testing.T, q *queue) {
			q.AddAfter("now", 0)
			if n := q.Len(); n != 1 {
				t.Fatalf("Len = %d, want 1", n)
			}
		}},
		{"Add supersedes a pending AddAfter", func(t *testing.T, q *queue) {
			q.AddAfter("a", 50*time.Millisecond)
			q.Add("a")
			q.Done(mustGet(t, q))
			// The timer was stopped by Add, so nothing else arrives.
			q.mu.Lock()
			timers := len(q.timers)
			q.mu.Unlock()
			if timers != 0 {
				t.Fatalf("%d timers pending after Add, want 0", timers)
			}
		}},
		{"a sooner AddAfter replaces a later one", func(t *testing.T, q *queue) {
			q.AddAfter("a", time.Hour)
			q.AddAfter("a", 20*time.Millisecond)
			if k := mustGet(t, q); k != "a" {
				t.Fatalf("got %q, want a", k)
			}
		}},
		{"AddAfter for a waiting key is ignored", func(t *testing.T, q *queue) {
			q.Add("a")
			q.AddAfter("a", time.Hour)
			q.mu.Lock()
			timers := len(q.timers)
			q.mu.Unlock()
			if timers != 0 {
				t.Fatalf("%d timers for a key already waiting, want 0", timers)
			}
		}},
		{"Close unblocks Get", func(t *testing.T, q *queue) {
			res := getAsync(q)
			q.Close()
			select {
			case r := <-res:
				if r.ok {
					t.Fatalf("Get after Close returned key %q with ok", r.key)
				}
			case <-time.After(queueWait):
				t.Fatalf("Get still blocked %s after Close", queueWait)
			}
		}},
		{"Close stops timers and later adds", func(t *testing.T, q *queue) {
			q.AddAfter("a", time.Hour)
			q.Close()
			q.Add("b")
			q.AddAfter("c", time.Millisecond)
			q.mu.Lock()
			timers, order := len(q.timers), len(q.order)
			q.mu.Unlock()
			if timers != 0 || order != 0 {
				t.Fatalf("after Close: %d timers, %d keys waiting; want none", timers, order)
			}
			if _, ok := q.Get(); ok {
				t.Fatal("Get on a closed queue reported ok")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue()
			t.Cleanup(q.Close)
			tc.run(t, q)
		})
	}
}

func TestResyncWait(t *testing.T) {
	tests := []struct {
		n    int
		rate int
		want time.Duration
	}{
		{0, 1000, 30 * time.Second},
		{30000, 1000, 30 * time.Second},
		{50000, 1000, 50 * time.Second},
		{150000, 1000, 150 * time.Second},
		{150000, 0, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := resyncWait(tc.n, 30*time.Second, tc.rate); got != tc.want {
			t.Errorf("resyncWait(%d, 30s, %d) = %s, want %s", tc.n, tc.rate, got, tc.want)
		}
	}
}
