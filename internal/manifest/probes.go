package manifest

import (
	"fmt"
	"strconv"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Probe is a health check the agent runs, spelled as a Kubernetes
// container probe: exactly one of HTTPGet, TCPSocket and Exec, with
// Kubernetes' timing names. InitialDelaySeconds is the check's start
// period (no check runs before it).
type Probe struct {
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	Exec                *ExecAction      `json:"exec,omitempty"`
	InitialDelaySeconds int              `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int              `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int              `json:"timeoutSeconds,omitempty"`
	FailureThreshold    int              `json:"failureThreshold,omitempty"`
	SuccessThreshold    int              `json:"successThreshold,omitempty"`
}

// HTTPGetAction is an HTTP GET of Path on Port; ExpectedStatus is a code
// (200) or a range ("200-299"), by default 200-399.
type HTTPGetAction struct {
	Path           string      `json:"path,omitempty"`
	Port           int         `json:"port"`
	ExpectedStatus StatusRange `json:"expectedStatus,omitempty"`
}

// StatusRange is an HTTP status code or range, written as a number (200)
// or a string ("200", "200-299").
type StatusRange string

// UnmarshalJSON takes a string or a number, as Quantity does.
func (r *StatusRange) UnmarshalJSON(b []byte) error {
	var q Quantity
	if err := q.UnmarshalJSON(b); err != nil {
		return err
	}
	*r = StatusRange(q)
	return nil
}

// TCPSocketAction opens a TCP connection to Port.
type TCPSocketAction struct {
	Port int `json:"port"`
}

// ExecAction runs Command in the container; exit status 0 passes.
type ExecAction struct {
	Command []string `json:"command"`
}

// Limits and defaults of probes. The defaults are Kubernetes' except the
// timeout, whose default of 1 s is Kubernetes' too; they are applied by
// the agent, so a stored spec keeps what the user wrote.
const (
	MaxProbeSeconds      = 3600
	MaxProbeStartSeconds = 86400
	MaxProbeThreshold    = 1000
	MaxProbePathLen      = 2048
	MaxProbeCommandArgs  = 64
	DefaultProbePeriod   = 10
	DefaultProbeTimeout  = 1
)

// probeSlot is one of the three probes of a spec.
type probeSlot struct {
	field string
	probe *Probe
	// oneSuccess: a success threshold above 1 makes no sense (Kubernetes
	// refuses it for liveness and startup probes too).
	oneSuccess bool
}

func (s *Spec) probeSlots() []probeSlot {
	return []probeSlot{
		{"spec.startupProbe", s.StartupProbe, true},
		{"spec.livenessProbe", s.LivenessProbe, true},
		{"spec.readinessProbe", s.ReadinessProbe, false},
	}
}

// validateProbes checks the spec's probes against the workload type and
// the ports the workload exposes.
func validateProbes(c *collector, s *Spec) {
	for _, slot := range s.probeSlots() {
		if slot.probe == nil {
			continue
		}
		if s.Type == "compose" {
			c.add(slot.field, "not for compose workloads: give the services a healthcheck in the compose file")
			continue
		}
		validateProbe(c, slot, s)
	}
}

func validateProbe(c *collector, slot probeSlot, s *Spec) {
	f, p := slot.field, slot.probe
	n := 0
	if p.HTTPGet != nil {
		n++
		validateHTTPGet(c, f+".httpGet", p.HTTPGet, s)
	}
	if p.TCPSocket != nil {
		n++
		validateProbePort(c, f+".tcpSocket.port", p.TCPSocket.Port, s)
	}
	if p.Exec != nil {
		n++
		validateExec(c, f+".exec", p.Exec, s)
	}
	switch {
	case n == 0:
		c.add(f, "needs one of httpGet, tcpSocket, exec")
	case n > 1:
		c.add(f, "give one of httpGet, tcpSocket, exec, not %d", n)
	}
	validateProbeTiming(c, slot)
}

// validateProbeTiming checks the probe's durations and thresholds.
func validateProbeTiming(c *collector, slot probeSlot) {
	f, p := slot.field, slot.probe
	bounded := func(name string, v, max int) {
		switch {
		case v < 0:
			c.add(f+"."+name, "must not be negative, got %d", v)
		case v > max:
			c.add(f+"."+name, "must be at most %d, got %d", max, v)
		}
	}
	bounded("initialDelaySeconds", p.InitialDelaySeconds, MaxProbeStartSeconds)
	bounded("periodSeconds", p.PeriodSeconds, MaxProbeSeconds)
	bounded("timeoutSeconds", p.TimeoutSeconds, MaxProbeSeconds)
	bounded("failureThreshold", p.FailureThreshold, MaxProbeThreshold)
	bounded("successThreshold", p.SuccessThreshold, MaxProbeThreshold)
	period, timeout := orDefault(p.PeriodSeconds, DefaultProbePeriod), orDefault(p.TimeoutSeconds, DefaultProbeTimeout)
	if p.TimeoutSeconds >= 0 && p.PeriodSeconds >= 0 && timeout > period {
		c.add(f+".timeoutSeconds", "%d s is longer than the period of %d s", timeout, period)
	}
	if slot.oneSuccess && p.SuccessThreshold > 1 {
		c.add(f+".successThreshold", "must be 1 for a startup or liveness probe, got %d", p.SuccessThreshold)
	}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func validateHTTPGet(c *collector, f string, h *HTTPGetAction, s *Spec) {
	switch {
	case h.Path == "":
	case len(h.Path) > MaxProbePathLen:
		c.add(f+".path", "must be at most %d characters", MaxProbePathLen)
	case !strings.HasPrefix(h.Path, "/"):
		c.add(f+".path", "must start with /")
	case strings.ContainsFunc(h.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		c.add(f+".path", "must not contain spaces or control characters")
	}
	validateProbePort(c, f+".port", h.Port, s)
	if h.ExpectedStatus != "" {
		if _, _, err := ParseStatusRange(string(h.ExpectedStatus)); err != nil {
			c.add(f+".expectedStatus", "%v", err)
		}
	}
}

// validateProbePort checks that port is one the workload exposes over
// TCP: a container port the container declares, or the guest port of a
// VM's port forward (the agent probes its host side).
func validateProbePort(c *collector, f string, port int, s *Spec) {
	if port < 1 || port > 65535 {
		c.add(f, "must be between 1 and 65535, got %d", port)
		return
	}
	switch {
	case s.Container != nil:
		for _, p := range s.Container.Ports {
			if p.ContainerPort == port && (p.Protocol == "" || p.Protocol == "tcp") {
				return
			}
		}
		c.add(f, "port %d is not a tcp port of spec.container.ports", port)
	case s.VM != nil:
		for _, n := range s.VM.Networks {
			if n.Mode != "" && n.Mode != "user" {
				continue
			}
			for _, pf := range n.PortForwards {
				if pf.GuestPort == port && (pf.Protocol == "" || pf.Protocol == "tcp") {
					return
				}
			}
		}
		c.add(f, "port %d is not the guest port of a tcp port forward of a user-mode network in spec.vm.networks", port)
	}
}

func validateExec(c *collector, f string, e *ExecAction, s *Spec) {
	if s.VM != nil {
		c.add(f, "not for VMs: the agent cannot run a command in a guest; use httpGet or tcpSocket")
		return
	}
	switch {
	case len(e.Command) == 0:
		c.add(f+".command", "required, the command and its arguments")
		return
	case len(e.Command) > MaxProbeCommandArgs:
		c.add(f+".command", "at most %d entries, got %d", MaxProbeCommandArgs, len(e.Command))
	case e.Command[0] == "":
		c.add(index(f+".command", 0), "must name the program")
	}
	for i, a := range e.Command {
		noNUL(c, index(f+".command", i), a)
	}
	if n := argvBytes(e.Command); n > MaxArgBytes {
		c.add(f+".command", "takes %d bytes, more than the limit of %d", n, MaxArgBytes)
	}
}

// ParseStatusRange reads an expected HTTP status: "200" or "200-299",
// codes between 100 and 599.
func ParseStatusRange(s string) (lo, hi uint32, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	l, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("must be a status code such as \"200\" or a range such as \"200-299\", got %q", s)
	case l < 100 || h > 599:
		return 0, 0, fmt.Errorf("codes must be between 100 and 599, got %q", s)
	case l > h:
		return 0, 0, fmt.Errorf("range %q is empty", s)
	}
	return uint32(l), uint32(h), nil
}

// probeToProto converts a probe that passed validation; nil stays nil.
func probeToProto(p *Probe) *persysv1.HealthCheck {
	if p == nil {
		return nil
	}
	hc := &persysv1.HealthCheck{
		IntervalSeconds:    clampInt32(p.PeriodSeconds),
		TimeoutSeconds:     clampInt32(p.TimeoutSeconds),
		FailureThreshold:   clampInt32(p.FailureThreshold),
		SuccessThreshold:   clampInt32(p.SuccessThreshold),
		StartPeriodSeconds: clampInt32(p.InitialDelaySeconds),
	}
	switch {
	case p.HTTPGet != nil:
		hc.Type = persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP
		hc.Path, hc.Port = p.HTTPGet.Path, clampPort(p.HTTPGet.Port)
		if p.HTTPGet.ExpectedStatus != "" {
			hc.ExpectedStatusMin, hc.ExpectedStatusMax, _ = ParseStatusRange(string(p.HTTPGet.ExpectedStatus))
		}
	case p.TCPSocket != nil:
		hc.Type = persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP
		hc.Port = clampPort(p.TCPSocket.Port)
	case p.Exec != nil:
		hc.Type = persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC
		hc.Command = copySlice(p.Exec.Command)
	}
	return hc
}

// probeFromProto writes a stored check back as a probe. A type the
// manifest has no word for gives a probe with no action, which Validate
// refuses.
func probeFromProto(hc *persysv1.HealthCheck) *Probe {
	if hc == nil {
		return nil
	}
	p := &Probe{
		PeriodSeconds:       int(hc.GetIntervalSeconds()),
		TimeoutSeconds:      int(hc.GetTimeoutSeconds()),
		FailureThreshold:    int(hc.GetFailureThreshold()),
		SuccessThreshold:    int(hc.GetSuccessThreshold()),
		InitialDelaySeconds: int(hc.GetStartPeriodSeconds()),
	}
	switch hc.GetType() {
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP:
		p.HTTPGet = &HTTPGetAction{Path: hc.GetPath(), Port: int(hc.GetPort()),
			ExpectedStatus: StatusRange(formatStatusRange(hc.GetExpectedStatusMin(), hc.GetExpectedStatusMax()))}
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP:
		p.TCPSocket = &TCPSocketAction{Port: int(hc.GetPort())}
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC:
		p.Exec = &ExecAction{Command: copySlice(hc.GetCommand())}
	}
	return p
}

// formatStatusRange is ParseStatusRange's inverse; 0 and 0 (the default)
// give "". A pair ParseStatusRange cannot give comes out as text it
// refuses.
func formatStatusRange(lo, hi uint32) string {
	switch {
	case lo == 0 && hi == 0:
		return ""
	case lo == hi:
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

func clampInt32(v int) int32 {
	if v < 0 || v > 1<<31-1 {
		return 0
	}
	return int32(v)
}
