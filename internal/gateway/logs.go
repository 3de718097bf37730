package gateway

import (
	"net/http"
	"strconv"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func (g *gateway) logRoutes() []route {
	return []route{
		{"GET", "/v1/workloads/{name}/logs", readers, g.logs},
	}
}

// logs answers the tail of a workload's log as text/plain; the node that
// holds it and whether the log held more are in X-Persys-Node and
// X-Persys-Truncated.
func (g *gateway) logs(w http.ResponseWriter, r *http.Request) (int, error) {
	var tail int64
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, &httpError{code: http.StatusBadRequest, msg: "query parameter tail must be a non-negative number of bytes, got " + strconv.Quote(v)}
		}
		tail = n
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.GetWorkloadLogs(ctx, &persysv1.GetWorkloadLogsRequest{Name: r.PathValue("name"), TailBytes: tail})
	if err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Persys-Node", resp.GetNodeId())
	w.Header().Set("X-Persys-Truncated", strconv.FormatBool(resp.GetTruncated()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.GetData())
	return http.StatusOK, nil
}
