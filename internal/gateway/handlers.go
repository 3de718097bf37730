package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/buildinfo"
	"github.com/persys-dev/compute/internal/gateway/audit"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/manifest"
)

// The REST handlers: each turns a request into one ControlService call
// and writes its answer as JSON (errors are mapped once, by package
// httperr).

func (g *gateway) apply(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, g.maxBody, "manifest", "a workload manifest (YAML or JSON)")
	if err != nil {
		return 0, err
	}
	m, err := manifest.Parse(body)
	if err != nil {
		return 0, httperr.FromManifest(err)
	}
	req := m.ToApplyRequest()
	audit.NoteWorkload(r, req.GetName())
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ApplyWorkload(ctx, req)
	if err != nil {
		return 0, err
	}
	code := http.StatusOK
	if resp.GetResult() == "created" {
		code = http.StatusCreated
	}
	return writeJSON(w, code, resp)
}

// applyManifests applies every workload of a manifest stream in one
// ApplyWorkloads call. The stream is validated whole first, so an invalid
// document is a 400 and nothing is applied; once the call succeeds the
// answer is 200 and each item's failure is in its result.
func (g *gateway) applyManifests(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, manifest.MaxStreamSize, "manifest stream",
		"workload manifests (YAML documents separated by --- lines, or one JSON object)")
	if err != nil {
		return 0, err
	}
	ms, err := manifest.ParseAll(body)
	if err != nil {
		return 0, httperr.FromManifest(err)
	}
	req := &persysv1.ApplyWorkloadsRequest{Items: make([]*persysv1.ApplyRequest, len(ms))}
	for i, m := range ms {
		req.Items[i] = m.ToApplyRequest()
	}
	audit.NoteWorkloads(r, len(ms))
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ApplyWorkloads(ctx, req)
	})
}

func (g *gateway) listWorkloads(w http.ResponseWriter, r *http.Request) (int, error) {
	sel, err := parseSelector(r.URL.Query().Get("selector"))
	if err != nil {
		return 0, err
	}
	watch, err := wantsWatch(r, "watch")
	if err != nil {
		return 0, err
	}
	if watch {
		return g.watchWorkloads(w, r, sel)
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: sel})
	})
}

func (g *gateway) getWorkload(w http.ResponseWriter, r *http.Request) (int, error) {
	events, err := parseBool(r.URL.Query(), "events")
	if err != nil {
		return 0, err
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: r.PathValue("name"), WithEvents: events})
	})
}

func (g *gateway) deleteWorkload(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusAccepted, func(ctx context.Context) (proto.Message, error) {
		return g.control.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: r.PathValue("name")})
	})
}

func (g *gateway) retry(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.RetryWorkload(ctx, &persysv1.RetryRequest{Name: r.PathValue("name")})
	})
}

func (g *gateway) listNodes(w http.ResponseWriter, r *http.Request) (int, error) {
	watch, err := wantsWatch(r, "watch")
	if err != nil {
		return 0, err
	}
	if watch {
		return g.watchNodes(w, r)
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListNodes(ctx, &persysv1.ListNodesRequest{})
	})
}

func (g *gateway) getNode(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetNode(ctx, &persysv1.GetNodeRequest{Id: r.PathValue("id")})
	})
}

func (g *gateway) cordon(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.CordonNode(ctx, &persysv1.CordonRequest{Id: r.PathValue("id")})
	})
}

func (g *gateway) uncordon(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.UncordonNode(ctx, &persysv1.CordonRequest{Id: r.PathValue("id")})
	})
}

// drain is a long call: the scheduler answers when every workload moved or
// the drain timeout passed, so the call is bounded by that timeout plus
// drainSlack instead of the usual call timeout. An incomplete drain is
// still 200; the body's complete and workloads say what did not move.
func (g *gateway) drain(w http.ResponseWriter, r *http.Request) (int, error) {
	timeout := defaultDrainTimeout
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := parseTimeout("timeout", s, maxDrainTimeout)
		if err != nil {
			return 0, err
		}
		timeout = d
	}
	// Whole seconds, rounded up, and the call's deadline from the same.
	secs := int64((timeout + time.Second - 1) / time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(secs)*time.Second+drainSlack)
	defer cancel()
	resp, err := g.control.DrainNode(ctx, &persysv1.DrainRequest{Id: r.PathValue("id"), TimeoutSeconds: secs})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) leader(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetLeader(ctx, &persysv1.GetLeaderRequest{})
	})
}

// version answers the gateway's own build; it needs no scheduler, so a
// client can tell the two ends' versions apart even while the scheduler is
// away.
func (g *gateway) version(w http.ResponseWriter, _ *http.Request) (int, error) {
	b, err := json.Marshal(buildinfo.Get())
	if err != nil {
		return 0, fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
	return http.StatusOK, nil
}

func (g *gateway) summary(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetClusterSummary(ctx, &persysv1.ClusterSummaryRequest{})
	})
}

func (g *gateway) listEvents(w http.ResponseWriter, r *http.Request) (int, error) {
	q := r.URL.Query()
	req := &persysv1.ListEventsRequest{Workload: q.Get("workload"), Type: q.Get("type")}
	if len(req.Type) > 64 {
		return 0, httperr.Field("type", "longer than 64 characters")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventsLimit {
			return 0, httperr.Field("limit", fmt.Sprintf("must be an integer from 1 to %d, got %q", maxEventsLimit, s))
		}
		req.Limit = int32(n)
	}
	follow, err := wantsWatch(r, "follow")
	if err != nil {
		return 0, err
	}
	if follow {
		return g.followEvents(w, r, req.Workload, req.Type)
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListEvents(ctx, req)
	})
}

func (g *gateway) healthz(w http.ResponseWriter, _ *http.Request) (int, error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok\n")
	return http.StatusOK, nil
}

// parseSelector reads "k=v,k2=v2" into a map.
func parseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	sel := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, httperr.Field("selector", fmt.Sprintf("%q is not of the form key=value", part))
		}
		if old, dup := sel[k]; dup && old != v {
			return nil, httperr.Field("selector", fmt.Sprintf("key %q is given twice with different values", k))
		}
		sel[k] = v
	}
	return sel, nil
}

// parseTimeout reads a query duration: a Go duration (90s, 2m) or whole
// seconds, more than 0 and at most limit.
func parseTimeout(name, s string, limit time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, httperr.Field(name, fmt.Sprintf("must be a duration such as 60s or 2m, got %q", s))
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > limit {
		return 0, httperr.Field(name, fmt.Sprintf("must be more than 0 and at most %s, got %s", limit, s))
	}
	return d, nil
}

func parseBool(q map[string][]string, name string) (bool, error) {
	vals := q[name]
	if len(vals) == 0 || vals[0] == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(vals[0])
	if err != nil {
		return false, httperr.Field(name, fmt.Sprintf("must be true or false, got %q", vals[0]))
	}
	return b, nil
}
