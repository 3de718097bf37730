package servicectl

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

const (
	oldHash = "0111111111"
	newHash = "0222222222"
	badHash = "0333333333"
)

// inst builds an instance of hash with index; state is "r" (ready and
// available), "s" (starting), "f" (failed), "d" (deleting) or "w" (ready
// for one second only).
func inst(hash string, index int, state string) Instance {
	i := Instance{Name: ReplicaName("web", hash, index), Hash: hash, Index: index}
	switch state {
	case "r":
		i.State, i.ReadySince = Ready, t0.Add(-time.Hour)
	case "w":
		i.State, i.ReadySince = Ready, t0.Add(-time.Second)
	case "f":
		i.State = Failed
	case "d":
		i.State, i.Deleting = Ready, true
	}
	return i
}

func many(hash, states string) []Instance {
	out := make([]Instance, len(states))
	for k, s := range states {
		out[k] = inst(hash, k, string(s))
	}
	return out
}

// update is an input rolling web from revision 1 (oldHash, good) to 2.
func update(replicas int, p Policy, is ...[]Instance) Input {
	return Input{Now: t0, Service: "web", Replicas: replicas, Policy: p, Target: 2, TargetHash: newHash,
		Prior:     Progress{Revision: 2, CurrentGood: 1, ProgressAt: t0.Add(-time.Second), Phase: PhaseProgressing},
		Instances: slices.Concat(is...)}
}

// steady is an input for web at its good revision 2.
func steady(replicas int, p Policy, is ...[]Instance) Input {
	in := update(replicas, p, is...)
	in.Prior.CurrentGood, in.Prior.PreviousGood, in.Prior.Phase = 2, 1, PhaseComplete
	return in
}

func names(hash string, idx ...int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = ReplicaName("web", hash, i)
	}
	return out
}

func createdNames(cs []Create) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

var surge1 = Policy{MaxSurge: 1, ProgressDeadline: time.Minute}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         Input
		create     []string
		del        []string
		rollbackTo uint64
		phase      Phase
		good       uint64
	}{
		{name: "first deployment creates every replica",
			in: func() Input {
				in := steady(3, surge1)
				in.Prior = Progress{}
				return in
			}(),
			create: names(newHash, 0, 1, 2), phase: PhaseProgressing},
		{name: "first deployment completes when all are available",
			in: func() Input {
				in := steady(3, surge1, many(newHash, "rrr"))
				in.Prior = Progress{Revision: 2, ProgressAt: t0}
				return in
			}(),
			phase: PhaseComplete, good: 2},
		{name: "steady and complete does nothing", in: steady(3, surge1, many(newHash, "rrr")), phase: PhaseComplete, good: 2},
		{name: "scale up creates the missing indices", in: steady(5, surge1, many(newHash, "rrr")),
			create: names(newHash, 3, 4), phase: PhaseProgressing, good: 2},
		{name: "scale down deletes the highest indices", in: steady(2, surge1, many(newHash, "rrrrr")),
			del: names(newHash, 4, 3, 2), phase: PhaseProgressing, good: 2},
		{name: "scale down deletes unavailable replicas first", in: steady(2, surge1, many(newHash, "rsrrr")),
			del: names(newHash, 1, 4, 3), phase: PhaseProgressing, good: 2},
		{name: "scale to zero", in: steady(0, surge1, many(newHash, "rr")), del: names(newHash, 1, 0), phase: PhaseProgressing, good: 2},
		{name: "a replica lost with its node is only counted", in: steady(3, surge1, many(newHash, "rsr")), phase: PhaseComplete, good: 2},
		{name: "a failed replica of the good revision is replaced", in: steady(3, surge1, many(newHash, "rfr")),
			del: names(newHash, 1), create: names(newHash, 3), phase: PhaseComplete, good: 2},
		{name: "a failed replica waits for room without surge", in: steady(3, Policy{MaxUnavailable: 1}, many(newHash, "rfr")),
			del: names(newHash, 1), phase: PhaseComplete, good: 2},

		{name: "update surges one new replica", in: update(4, surge1, many(oldHash, "rrrr")),
			create: names(newHash, 0), phase: PhaseProgressing, good: 1},
		{name: "update waits while the new replica starts", in: update(4, surge1, many(oldHash, "rrrr"), many(newHash, "s")),
			phase: PhaseProgressing, good: 1},
		{name: "update waits for min ready", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"), many(newHash, "w"))
			in.Policy.MinReady = 10 * time.Second
			return in
		}(), phase: PhaseProgressing, good: 1},
		{name: "update removes one old once the new one is available", in: update(4, surge1, many(oldHash, "rrrr"), many(newHash, "r")),
			del: names(oldHash, 3), phase: PhaseProgressing, good: 1},
		{name: "a replica being deleted still takes room", in: update(4, surge1, many(oldHash, "rrrd"), many(newHash, "r")),
			phase: PhaseProgressing, good: 1},
		{name: "update surges again once the old one is gone", in: update(4, surge1, many(oldHash, "rrr"), many(newHash, "r")),
			create: names(newHash, 1), phase: PhaseProgressing, good: 1},
		{name: "max unavailable without surge deletes first", in: update(4, Policy{MaxUnavailable: 1, ProgressDeadline: time.Minute}, many(oldHash, "rrrr")),
			del: names(oldHash, 3), phase: PhaseProgressing, good: 1},
		{name: "max unavailable without surge creates once room", in: update(4, Policy{MaxUnavailable: 1, ProgressDeadline: time.Minute}, many(oldHash, "rrr")),
			create: names(newHash, 0), phase: PhaseProgressing, good: 1},
		{name: "unavailable old replicas go first and free room", in: update(4, surge1, many(oldHash, "srrr")),
			del: names(oldHash, 0), create: names(newHash, 0), phase: PhaseProgressing, good: 1},
		{name: "update completes", in: update(4, surge1, many(newHash, "rrrr")), phase: PhaseComplete, good: 2},

		{name: "a failed new replica rolls back", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"), many(newHash, "f"))
			in.Policy.AutoRollback = true
			return in
		}(), rollbackTo: 1, phase: PhaseRollingBack, good: 1},
		{name: "a failed new replica stops the update without auto rollback", in: update(4, surge1, many(oldHash, "rrrr"), many(newHash, "f")),
			phase: PhaseFailed, good: 1},
		{name: "a stopped update stays stopped", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrr"))
			in.Prior.Phase = PhaseFailed
			return in
		}(), phase: PhaseFailed, good: 1},
		{name: "a failed first deployment cannot roll back", in: func() Input {
			in := update(2, surge1, many(newHash, "f"))
			in.Policy.AutoRollback = true
			in.Prior = Progress{Revision: 2, ProgressAt: t0}
			return in
		}(), phase: PhaseFailed},
		{name: "the progress deadline rolls back", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"), many(newHash, "s"))
			in.Policy.AutoRollback = true
			in.Prior.ProgressAt = t0.Add(-2 * time.Minute)
			return in
		}(), rollbackTo: 1, phase: PhaseRollingBack, good: 1},
		{name: "after a rollback the bad replicas go", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrr"), many(badHash, "f"))
			in.TargetHash, in.Target = oldHash, 1
			in.Prior.RolledBackFrom, in.Prior.Phase, in.Prior.Revision = 2, PhaseRollingBack, 2
			return in
		}(), del: names(badHash, 0), create: names(oldHash, 3), phase: PhaseRollingBack, good: 1},
		{name: "a rollback completes", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"))
			in.TargetHash, in.Target = oldHash, 1
			in.Prior.RolledBackFrom, in.Prior.Phase, in.Prior.Revision = 2, PhaseRollingBack, 1
			return in
		}(), phase: PhaseComplete, good: 1},

		{name: "canary creates one new replica", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"))
			in.Policy.Canary = 1
			return in
		}(), create: names(newHash, 0), phase: PhaseProgressing, good: 1},
		{name: "canary available trims the old and waits for promote", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"), many(newHash, "r"))
			in.Policy.Canary = 1
			return in
		}(), del: names(oldHash, 3), phase: PhaseAwaitingPromotion, good: 1},
		{name: "canary holds without promote", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrr"), many(newHash, "r"))
			in.Policy.Canary = 1
			in.Prior.ProgressAt = t0.Add(-time.Hour) // the deadline does not count while held
			return in
		}(), phase: PhaseAwaitingPromotion, good: 1},
		{name: "canary promoted goes on", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrr"), many(newHash, "r"))
			in.Policy.Canary, in.Promoted = 1, true
			return in
		}(), create: names(newHash, 1), phase: PhaseProgressing, good: 1},
		{name: "an undo to the previous good revision is no canary", in: func() Input {
			in := update(4, surge1, many(oldHash, "r"), many(badHash, "rrr"))
			in.Policy.Canary = 1
			in.Target, in.TargetHash = 1, oldHash
			in.Prior.CurrentGood, in.Prior.PreviousGood, in.Prior.Revision = 3, 1, 3
			return in
		}(), create: names(oldHash, 1), phase: PhaseProgressing, good: 3},
		{name: "paused holds the update", in: func() Input {
			in := update(4, surge1, many(oldHash, "rrrr"))
			in.Policy.Paused = true
			return in
		}(), phase: PhasePaused, good: 1},
		{name: "paused still scales a finished service", in: func() Input {
			in := steady(4, surge1, many(newHash, "rrr"))
			in.Policy.Paused = true
			return in
		}(), create: names(newHash, 3), phase: PhaseProgressing, good: 2},
		{name: "more than replicas plus surge creates nothing", in: update(2, surge1, many(oldHash, "rrrr")),
			del: names(oldHash, 3, 2), phase: PhaseProgressing, good: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if got := createdNames(d.Create); !slices.Equal(got, tc.create) {
				t.Errorf("create = %v, want %v", got, tc.create)
			}
			if !slices.Equal(d.Delete, tc.del) {
				t.Errorf("delete = %v, want %v", d.Delete, tc.del)
			}
			if d.RollbackTo != tc.rollbackTo {
				t.Errorf("rollback to %d, want %d", d.RollbackTo, tc.rollbackTo)
			}
			if d.Progress.Phase != tc.phase {
				t.Errorf("phase = %v, want %v (%s)", d.Progress.Phase, tc.phase, d.Progress.Message)
			}
			if d.Progress.CurrentGood != tc.good {
				t.Errorf("current good = %d, want %d", d.Progress.CurrentGood, tc.good)
			}
			checkSafety(t, tc.in, d)
		})
	}
}

func TestDecideRecheck(t *testing.T) {
	in := update(4, surge1, many(oldHash, "rrrr"), many(newHash, "w"))
	in.Policy.MinReady = 10 * time.Second
	if d := Decide(in); !d.RecheckAt.Equal(t0.Add(9 * time.Second)) {
		t.Fatalf("recheck at %v, want when the new replica becomes available (%v)", d.RecheckAt, t0.Add(9*time.Second))
	}
	in = update(4, surge1, many(oldHash, "rrrr"), many(newHash, "s"))
	want := in.Prior.ProgressAt.Add(time.Minute + time.Second)
	if d := Decide(in); !d.RecheckAt.Equal(want) {
		t.Fatalf("recheck at %v, want past the deadline (%v)", d.RecheckAt, want)
	}
}

func TestDecideNewTargetResetsDeadline(t *testing.T) {
	in := update(4, surge1, many(oldHash, "rrrr"))
	in.Prior.Revision, in.Prior.Phase, in.Prior.ProgressAt = 1, PhaseFailed, t0.Add(-time.Hour)
	d := Decide(in)
	if d.Progress.Phase != PhaseProgressing || !d.Progress.ProgressAt.Equal(t0) || len(d.Create) != 1 {
		t.Fatalf("a new target after a failure: phase %v, progress at %v, creates %v", d.Progress.Phase, d.Progress.ProgressAt, d.Create)
	}
}

// checkSafety asserts the rules every decision keeps.
func checkSafety(t *testing.T, in Input, d Decision) {
	t.Helper()
	if len(d.Create) > 0 && len(in.Instances)+len(d.Create) > in.Replicas+in.Policy.MaxSurge {
		t.Fatalf("%d instances + %d created exceed replicas %d + surge %d", len(in.Instances), len(d.Create), in.Replicas, in.Policy.MaxSurge)
	}
	avail, lost := 0, 0
	byName := map[string]Instance{}
	for _, i := range in.Instances {
		byName[i.Name] = i
		if in.available(i) {
			avail++
		}
	}
	seen := map[string]bool{}
	for _, n := range d.Delete {
		i, ok := byName[n]
		if !ok || seen[n] || i.Deleting {
			t.Fatalf("deletes %q: unknown, twice or already deleting", n)
		}
		if in.Policy.DrainDelay > 0 && (!i.draining() || in.Now.Sub(i.DrainingSince) < in.Policy.DrainDelay) {
			t.Fatalf("deletes %q before it drained for %s (draining since %v, now %v)", n, in.Policy.DrainDelay, i.DrainingSince, in.Now)
		}
		seen[n] = true
		if in.available(i) {
			lost++
		}
	}
	for _, n := range d.Drain {
		i, ok := byName[n]
		if !ok || seen[n] || i.Deleting || i.draining() {
			t.Fatalf("drains %q: unknown, twice, deleting or draining already", n)
		}
		seen[n] = true
		if in.available(i) {
			lost++
		}
	}
	if floor := min(avail, in.Replicas-in.Policy.MaxUnavailable); avail-lost < floor {
		t.Fatalf("leaves %d available of %d, below %d", avail-lost, avail, floor)
	}
	for _, c := range d.Create {
		if _, dup := byName[c.Name]; dup || seen[c.Name] {
			t.Fatalf("creates %q twice or over an existing replica", c.Name)
		}
		seen[c.Name] = true
	}
	if d.RollbackTo != 0 && (len(d.Create) > 0 || len(d.Delete) > 0 || len(d.Drain) > 0) {
		t.Fatalf("a rollback step also acts: %v %v", d.Create, d.Delete)
	}
	if d.Progress.Phase == PhaseFailed && len(d.Create) > 0 {
		t.Fatalf("a failed update creates %v", d.Create)
	}
	if in.Policy.Paused && d.Progress.Phase == PhasePaused && (len(d.Create) > 0 || len(d.Drain) > 0) {
		t.Fatalf("a paused update acts")
	}
}

// TestDecideSafetyProperties runs Decide over random services and
// replica sets and checks the safety rules on every answer.
func TestDecideSafetyProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	states := "rrrswfd"
	for n := 0; n < 20000; n++ {
		p := Policy{MaxUnavailable: r.IntN(3), MaxSurge: r.IntN(3), ProgressDeadline: time.Minute,
			AutoRollback: r.IntN(2) == 0, Canary: r.IntN(3), Paused: r.IntN(5) == 0, MinReady: time.Duration(r.IntN(3)) * time.Second}
		if p.MaxUnavailable == 0 && p.MaxSurge == 0 {
			p.MaxSurge = 1
		}
		var is []Instance
		for _, h := range []string{oldHash, newHash, badHash} {
			k := r.IntN(5)
			for i := 0; i < k; i++ {
				is = append(is, inst(h, i, string(states[r.IntN(len(states))])))
			}
		}
		in := update(r.IntN(6), p, is)
		in.Promoted = r.IntN(2) == 0
		if r.IntN(3) == 0 {
			in.Prior.CurrentGood = 2
		}
		in.Prior.Phase = Phase(r.IntN(7))
		d := Decide(in)
		checkSafety(t, in, d)
	}
}

// TestDecideDrainProperty steps random services through time: replicas
// start, turn ready, flap and fail at random, and each decision is
// carried out (creates start, drains leave the endpoints, deletes go
// some steps later). A replica is never deleted before it has been out
// of the endpoints for the drain delay, and every step keeps the safety
// rules.
func TestDecideDrainProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for run := 0; run < 300; run++ {
		delay := time.Duration(1+r.IntN(3)) * time.Second
		p := Policy{MaxUnavailable: r.IntN(2), MaxSurge: 1 + r.IntN(2), ProgressDeadline: time.Minute, AutoRollback: true, DrainDelay: delay}
		in := steady(1+r.IntN(5), p, many(newHash, "rrrrr"[:1+r.IntN(5)]))
		lastIn := map[string]time.Time{} // when each replica was last in the endpoints
		for step := 0; step < 60; step++ {
			in.Now = in.Now.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
			in.Instances = churn(r, in.Now, in.Instances)
			for _, i := range in.Instances {
				if i.State == Ready && !i.Deleting && !i.draining() {
					lastIn[i.Name] = in.Now
				}
			}
			if r.IntN(10) == 0 {
				in.Replicas = r.IntN(6)
			}
			d := Decide(in)
			checkSafety(t, in, d)
			for _, n := range d.Delete {
				if at, ok := lastIn[n]; ok && in.Now.Sub(at) < delay {
					t.Fatalf("run %d step %d: %s deleted %s after it left the endpoints, drain delay %s", run, step, n, in.Now.Sub(at), delay)
				}
			}
			in.Instances = carryOut(in, d)
			in.Prior = d.Progress
			if end := (&view{in: &in}).drainEnd(); !end.IsZero() && (d.RecheckAt.IsZero() || d.RecheckAt.After(end)) {
				t.Fatalf("run %d step %d: a drain ends at %v but the service is looked at again only at %v", run, step, end, d.RecheckAt)
			}
		}
	}
}

// churn changes replicas as agents would: starting ones turn ready or
// fail, ready ones sometimes flap, deleted ones go.
func churn(r *rand.Rand, now time.Time, is []Instance) []Instance {
	out := is[:0]
	for _, i := range is {
		switch k := r.IntN(10); {
		case i.Deleting && k < 5:
			continue // gone
		case i.State == Starting && k < 5:
			i.State, i.ReadySince = Ready, now
		case i.State == Starting && k == 5:
			i.State = Failed
		case i.State == Ready && k == 0:
			i.State = Starting
		}
		out = append(out, i)
	}
	return out
}

// carryOut applies a decision to the instances, as the controller does.
func carryOut(in Input, d Decision) []Instance {
	is := slices.Clone(in.Instances)
	for k := range is {
		if slices.Contains(d.Drain, is[k].Name) {
			is[k].DrainingSince = in.Now
		}
		if slices.Contains(d.Delete, is[k].Name) {
			is[k].Deleting = true
		}
	}
	for _, c := range d.Create {
		is = append(is, Instance{Name: c.Name, Hash: in.TargetHash, Index: c.Index})
	}
	return is
}

func TestDecideDrains(t *testing.T) {
	p := surge1
	p.DrainDelay = 2 * time.Second
	in := steady(2, p, many(newHash, "rrr"))
	d := Decide(in)
	if want := names(newHash, 2); !slices.Equal(d.Drain, want) || len(d.Delete) != 0 {
		t.Fatalf("scale down: drain %v delete %v, want drain %v and no delete", d.Drain, d.Delete, want)
	}
	// Nothing else wakes the service when the drain it starts ends.
	if want := t0.Add(2 * time.Second); !d.RecheckAt.Equal(want) {
		t.Fatalf("scale down: recheck at %v, want at the drain's end %v", d.RecheckAt, want)
	}
	in.Instances[2].DrainingSince = t0.Add(-time.Second)
	if d := Decide(in); len(d.Drain) != 0 || len(d.Delete) != 0 || !d.RecheckAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("draining for 1s: drain %v delete %v recheck %v, want nothing until %v", d.Drain, d.Delete, d.RecheckAt, t0.Add(time.Second))
	}
	in.Now = t0.Add(time.Second)
	if d := Decide(in); !slices.Equal(d.Delete, names(newHash, 2)) || d.Progress.Replicas != 2 {
		t.Fatalf("drained: delete %v (replicas %d), want %v", d.Delete, d.Progress.Replicas, names(newHash, 2))
	}
}

// A failed update whose new replicas all turn available after all (slow
// starts past the deadline, no rollback target) completes: it is no
// longer failing, and a FAILED phase would keep the controller from ever
// replacing a replica again.
func TestDecideFailedUpdateCompletesWhenAvailable(t *testing.T) {
	in := update(3, surge1, many(newHash, "rrr"))
	in.Prior.Phase, in.Prior.CurrentGood, in.Prior.ProgressAt = PhaseFailed, 0, t0.Add(-time.Hour)
	d := Decide(in)
	if d.Progress.Phase != PhaseComplete || d.Progress.CurrentGood != 2 {
		t.Fatalf("phase %v, current good %d: want COMPLETE at revision 2", d.Progress.Phase, d.Progress.CurrentGood)
	}
	in.Instances = many(newHash, "rrs")
	if d := Decide(in); d.Progress.Phase != PhaseFailed {
		t.Fatalf("with one replica still starting: phase %v, want FAILED", d.Progress.Phase)
	}
}
