// Package monitor owns the loop that keeps every member's health: each
// interval it probes every member's gateway at once (each probe bounded
// by a timeout), steps the health state machine with the outcome, writes
// the new health to the federation's store, and reports each transition
// as an event and a log line. One goroutine owns the loop; Run returns
// when its context ends.
package monitor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/health"
	"github.com/persys-dev/compute/internal/federation/member"
)

// Defaults for Config.
const (
	DefaultInterval = 3 * time.Second
	DefaultGrace    = 15 * time.Second
	DefaultTimeout  = 5 * time.Second
)

// Config wires a Monitor.
type Config struct {
	Store *fedstore.Store
	// Interval between probe rounds, Grace before an unreachable member
	// is lost, Timeout of one probe; zero means the default.
	Interval, Grace, Timeout time.Duration
	Logger                   *slog.Logger
	Registry                 prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Monitor probes members. Create with New, run with Run.
type Monitor struct {
	cfg     Config
	clients map[string]cached // owned by the loop goroutine
	metrics *metrics
}

// cached is a member's gateway client, kept while its identity is the same.
type cached struct {
	cert string
	c    *client.Client
}

// New returns a Monitor with cfg's zero values replaced by defaults.
func New(cfg Config) *Monitor {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Monitor{cfg: cfg, clients: map[string]cached{}, metrics: newMetrics(cfg.Registry)}
}

// Grace is the configured grace period.
func (m *Monitor) Grace() time.Duration { return m.cfg.Grace }

// Run probes every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	defer m.closeAll()
	for {
		if err := m.Round(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("member probe round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round probes every member once and records the outcomes. Not safe to
// call concurrently with itself or Run.
func (m *Monitor) Round(ctx context.Context) error {
	members, err := m.cfg.Store.ListMembers(ctx)
	if err != nil {
		return err
	}
	healths, err := m.cfg.Store.Healths(ctx)
	if err != nil {
		return err
	}
	m.forgetGone(members)
	probes := make([]health.Probe, len(members))
	var wg sync.WaitGroup
	for i, mem := range members {
		c, err := m.clientFor(mem)
		if err != nil {
			probes[i] = health.Probe{At: m.cfg.Now(), Err: err}
			continue
		}
		wg.Go(func() { probes[i] = m.probe(ctx, mem.Name, c) })
	}
	wg.Wait()
	counts := map[fedapi.State]int{}
	var errs []error
	for i, mem := range members {
		prev, ok := healths[mem.Name]
		if !ok {
			prev = health.Initial(mem.JoinedAt)
		}
		next, tr := health.Step(prev, probes[i], mem.JoinedAt, m.cfg.Grace)
		counts[next.State]++
		if err := m.record(ctx, mem.Name, next, tr); err != nil {
			errs = append(errs, err)
		}
	}
	m.metrics.setStates(counts)
	return errors.Join(errs...)
}

func (m *Monitor) probe(ctx context.Context, name string, c *client.Client) health.Probe {
	pctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	start := m.cfg.Now()
	s, err := member.Probe(pctx, c)
	m.metrics.probe(name, err == nil, time.Since(start))
	return health.Probe{At: m.cfg.Now(), Err: err, Summary: s}
}

func (m *Monitor) record(ctx context.Context, name string, h fedapi.Health, tr health.Transition) error {
	if err := m.cfg.Store.PutHealth(ctx, name, h); err != nil {
		if errors.Is(err, fedstore.ErrNotFound) {
			return nil // left while probed
		}
		return err
	}
	if tr == health.None {
		return nil
	}
	m.metrics.transition(tr)
	typ, msg := eventOf(name, h, tr, m.cfg.Grace)
	m.cfg.Logger.Info("member health changed", "cluster", name, "state", h.State, "err", h.LastError)
	return m.cfg.Store.AddEvent(ctx, fedapi.Event{Time: h.Since, Type: typ, Cluster: name, Message: msg})
}

func eventOf(name string, h fedapi.Health, tr health.Transition, grace time.Duration) (string, string) {
	switch tr {
	case health.ToReady:
		return fedapi.EventReachable, "cluster " + name + " is reachable (leader " + h.Leader + ")"
	case health.ToLost:
		return fedapi.EventLost, "cluster " + name + " unreachable for longer than the grace of " + grace.String() + ": " + h.LastError
	}
	return fedapi.EventUnreachable, "cluster " + name + " is unreachable: " + h.LastError
}

func (m *Monitor) clientFor(mem fedstore.Member) (*client.Client, error) {
	if c, ok := m.clients[mem.Name]; ok && c.cert == mem.Cert {
		return c.c, nil
	}
	id, err := member.Parse(fedapi.JoinRequest{Name: mem.Name, Gateway: mem.Gateway, CA: mem.CA, Cert: mem.Cert, Key: mem.Key}, m.cfg.Now())
	if err != nil {
		return nil, err // an identity that expired since the join
	}
	c, err := id.Client()
	if err != nil {
		return nil, err
	}
	m.metrics.expiry.WithLabelValues(mem.Name).Set(float64(id.Leaf.NotAfter.Unix()))
	if old, ok := m.clients[mem.Name]; ok {
		old.c.Close()
	}
	m.clients[mem.Name] = cached{cert: mem.Cert, c: c}
	return c, nil
}

func (m *Monitor) forgetGone(members []fedstore.Member) {
	keep := make(map[string]bool, len(members))
	for _, mem := range members {
		keep[mem.Name] = true
	}
	for name, c := range m.clients {
		if !keep[name] {
			c.c.Close()
			delete(m.clients, name)
			m.metrics.forget(name)
		}
	}
}

func (m *Monitor) closeAll() {
	for name, c := range m.clients {
		c.c.Close()
		delete(m.clients, name)
	}
}
