package docker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func cst(name string, rev uint64, id string, state persysv1.ActualState) *persysv1.WorkloadStatus {
	return &persysv1.WorkloadStatus{Name: name, Revision: rev, RuntimeId: id, State: state}
}

const (
	running = persysv1.ActualState_ACTUAL_STATE_RUNNING
	failed  = persysv1.ActualState_ACTUAL_STATE_FAILED
)

func ownsAll(string) bool { return true }

// listed renders the cache's list as "name/id/state" strings.
func listed(t *testing.T, c *statusCache) []string {
	t.Helper()
	ws, ok := c.list(ownsAll)
	if !ok {
		t.Fatal("cache not live")
	}
	out := []string{}
	for _, w := range ws {
		out = append(out, w.GetName()+"/"+w.GetRuntimeId()+"/"+w.GetState().String())
	}
	return out
}

func TestStatusCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		run  func(c *statusCache)
		want []string
	}{{
		name: "a write begun earlier than the entry's is dropped",
		run: func(c *statusCache) {
			old, fresh := c.begin(), c.begin()
			c.put(fresh, "a1", cst("a", 1, "a1", failed), t0, "")
			c.put(old, "a1", cst("a", 1, "a1", running), t0, "")
			c.end(old)
			c.end(fresh)
		},
		want: []string{"a/a1/ACTUAL_STATE_FAILED"},
	}, {
		name: "a late write cannot bring back a removed container",
		run: func(c *statusCache) {
			late := c.begin()
			c.gone("a1")
			c.put(late, "a1", cst("a", 1, "a1", running), t0, "")
			c.end(late)
		},
		want: []string{},
	}, {
		name: "the newest revision wins, then the latest creation",
		run: func(c *statusCache) {
			t := c.begin()
			c.put(t, "a1", cst("a", 1, "a1", running), t0.Add(time.Hour), "")
			c.put(t, "a2", cst("a", 2, "a2", failed), t0, "")
			c.put(t, "b1", cst("b", 1, "b1", failed), t0, "")
			c.put(t, "b2", cst("b", 1, "b2", running), t0.Add(time.Second), "")
			c.end(t)
		},
		want: []string{"a/a2/ACTUAL_STATE_FAILED", "b/b2/ACTUAL_STATE_RUNNING"},
	}, {
		name: "a re-list removes what it did not see and keeps newer writes",
		run: func(c *statusCache) {
			t := c.begin()
			c.put(t, "a1", cst("a", 1, "a1", running), t0, "")
			c.put(t, "b1", cst("b", 1, "b1", running), t0, "")
			c.end(t)
			list := c.begin()
			late := c.begin() // an Apply that created c1 after the list began
			c.put(late, "c1", cst("c", 1, "c1", running), t0, "")
			c.end(late)
			c.replace(list, map[string]bool{"b1": true})
			c.put(t, "a1", cst("a", 1, "a1", running), t0, "") // older than the re-list
			c.end(list)
		},
		want: []string{"b/b1/ACTUAL_STATE_RUNNING", "c/c1/ACTUAL_STATE_RUNNING"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newStatusCache()
			c.replace(c.begin(), nil)
			tt.run(c)
			if got := listed(t, c); !slices.Equal(got, tt.want) {
				t.Errorf("list = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStatusCacheOwnership: the cache holds every cluster's containers of
// the node and lists those its caller owns at the time of the call.
func TestStatusCacheOwnership(t *testing.T) {
	c := newStatusCache()
	tk := c.begin()
	c.put(tk, "a1", cst("a", 1, "a1", running), time.Time{}, "mine")
	c.put(tk, "b1", cst("b", 1, "b1", running), time.Time{}, "theirs")
	c.put(tk, "c1", cst("c", 1, "c1", running), time.Time{}, "")
	c.replace(tk, map[string]bool{"a1": true, "b1": true, "c1": true})
	c.end(tk)
	for _, tt := range []struct {
		owner string
		want  []string
	}{{"", []string{"c"}}, {"mine", []string{"a"}}} {
		ws, _ := c.list(func(l string) bool { return l == tt.owner })
		var got []string
		for _, w := range ws {
			got = append(got, w.GetName())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("owner %q: listed %v, want %v", tt.owner, got, tt.want)
		}
	}
}

func TestStatusCacheNotLive(t *testing.T) {
	c := newStatusCache()
	if _, ok := c.list(ownsAll); ok {
		t.Fatal("a cache never re-listed answers")
	}
	c.replace(c.begin(), nil)
	if _, ok := c.list(ownsAll); !ok {
		t.Fatal("a re-listed cache does not answer")
	}
	c.setLive(false)
	if _, ok := c.list(ownsAll); ok {
		t.Fatal("a cache after a gap answers")
	}
}

func TestStatusCacheDropsTombstones(t *testing.T) {
	c := newStatusCache()
	inFlight := c.begin()
	c.gone("a1")
	c.end(c.begin())
	if _, ok := c.byID["a1"]; !ok {
		t.Fatal("tombstone dropped while an older call is in flight")
	}
	c.end(inFlight)
	if len(c.byID) != 0 || c.tombs != 0 {
		t.Fatalf("tombstones left with no call in flight: %v (counted %d)", c.byID, c.tombs)
	}
}

func TestStatusCacheListIsACopy(t *testing.T) {
	c := newStatusCache()
	tk := c.begin()
	c.put(tk, "a1", cst("a", 1, "a1", running), time.Time{}, "")
	c.replace(tk, map[string]bool{"a1": true})
	c.end(tk)
	ws, _ := c.list(ownsAll)
	ws[0].State = failed
	if got := listed(t, c); got[0] != "a/a1/ACTUAL_STATE_RUNNING" {
		t.Fatalf("changing a listed status changed the cache: %v", got)
	}
}

func TestEventQueue(t *testing.T) {
	q := eventQueue{byID: map[string]*queuedEvent{}}
	q.add("c1", "a", false, false) // create: not told
	q.add("c2", "b", false, false)
	q.add("c1", "a", true, true) // destroy after create: one entry, destroyed, told
	q.add("c1", "a", false, false)
	var got []string
	for len(q.order) > 0 {
		id, e := q.pop()
		got = append(got, fmt.Sprintf("%s/%s/destroyed=%t/tell=%t", id, e.name, e.destroyed, e.tell))
	}
	want := []string{"c1/a/destroyed=true/tell=true", "c2/b/destroyed=false/tell=false"}
	if !slices.Equal(got, want) {
		t.Fatalf("queue = %v, want %v", got, want)
	}
	if len(q.byID) != 0 {
		t.Fatalf("queue kept %v", q.byID)
	}
}
