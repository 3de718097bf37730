package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// describeHealth prints the workload's health checks and what the agent's
// last checks said, when it has checks or its runtime reports health.
func describeHealth(w io.Writer, k kv, v *persysv1.WorkloadView, now time.Time) {
	spec, st := v.GetWorkload().GetSpec(), v.GetStatus()
	checks := []struct {
		kind string
		hc   *persysv1.HealthCheck
	}{{"Startup", spec.GetStartupCheck()}, {"Liveness", spec.GetLivenessCheck()}, {"Readiness", spec.GetReadinessCheck()}}
	has := st.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
	for _, c := range checks {
		has = has || c.hc != nil
	}
	if !has {
		return
	}
	k.head("Health")
	sub := kv{w: w, indent: "  ", width: 13}
	sub.line("Ready", strconv.FormatBool(st.GetReady()))
	sub.line("State", strings.ToLower(enumName(st.GetHealth())))
	if out := st.GetHealthOutput(); out != "" || st.GetHealthCheckedAt() != nil {
		sub.line("Last change", fmt.Sprintf("%s check, %s: %s", st.GetHealthCheck(), stamp(now, st.GetHealthCheckedAt()), orNone(oneLine(out))))
	} else if st.GetHealthCheck() != "" {
		// Health the runtime judged itself (a compose healthcheck).
		sub.line("Checked by", st.GetHealthCheck())
	}
	for _, c := range checks {
		if c.hc != nil {
			sub.line(c.kind, checkLine(c.hc))
		}
	}
}

// checkLine is one check as describe shows it, with the defaults the
// agent applies to its zero fields.
func checkLine(hc *persysv1.HealthCheck) string {
	var what string
	switch hc.GetType() {
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP:
		path := hc.GetPath()
		if path == "" {
			path = "/"
		}
		lo, hi := hc.GetExpectedStatusMin(), hc.GetExpectedStatusMax()
		if lo == 0 && hi == 0 {
			lo, hi = 200, 399
		}
		what = fmt.Sprintf("http GET :%d%s expects %d-%d", hc.GetPort(), path, lo, hi)
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP:
		what = fmt.Sprintf("tcp :%d", hc.GetPort())
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC:
		what = "exec " + strings.Join(hc.GetCommand(), " ")
	default:
		what = strings.ToLower(enumName(hc.GetType()))
	}
	def := func(v int32, d int) int {
		if v <= 0 {
			return d
		}
		return int(v)
	}
	what += fmt.Sprintf(" every %ds, timeout %ds, %d to fail, %d to pass", def(hc.GetIntervalSeconds(), 10),
		def(hc.GetTimeoutSeconds(), 1), def(hc.GetFailureThreshold(), 3), def(hc.GetSuccessThreshold(), 1))
	if s := hc.GetStartPeriodSeconds(); s > 0 {
		what += fmt.Sprintf(", after %ds", s)
	}
	return what
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
