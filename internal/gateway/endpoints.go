package gateway

// GET /v1/services/{name}/endpoints: the service's ready replicas with
// where to reach them; with ?watch=true an NDJSON stream of the whole set,
// first as it is (SNAPSHOT) and then each time it changes (UPDATE).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// EndpointsEvent is one line of the endpoints watch.
type EndpointsEvent struct {
	// Type is SNAPSHOT for the first line, UPDATE after.
	Type string `json:"type"`
	// Revision is the etcd revision the set was read at.
	Revision  int64             `json:"revision"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

func (g *gateway) serviceEndpoints(w http.ResponseWriter, r *http.Request) (int, error) {
	watch, err := parseBool(r.URL.Query(), "watch")
	if err != nil {
		return 0, err
	}
	req := &persysv1.ServiceEndpointsRequest{Name: r.PathValue("name")}
	if !watch {
		return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
			return g.control.GetServiceEndpoints(ctx, req)
		})
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := g.control.WatchServiceEndpoints(ctx, req)
	if err != nil {
		return 0, err
	}
	// The first set decides the status: a missing service is a 404, not
	// an empty 200 stream.
	l, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		line, err := endpointsLine(l)
		if err != nil {
			return http.StatusOK, err
		}
		if _, err := w.Write(line); err != nil {
			return http.StatusOK, nil // the client went away
		}
		_ = rc.Flush()
		if l, err = stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				g.log.Info("endpoints watch ended", "service", req.GetName(), "err", err)
			}
			return http.StatusOK, nil
		}
	}
}

// endpointsLine is l as one NDJSON line.
func endpointsLine(l *persysv1.ServiceEndpointList) ([]byte, error) {
	ev := EndpointsEvent{Type: l.GetType(), Revision: l.GetRevision(), Endpoints: make([]json.RawMessage, 0, len(l.GetEndpoints()))}
	for _, ep := range l.GetEndpoints() {
		b, err := contract.MarshalJSON(jsonOut, ep)
		if err != nil {
			return nil, err
		}
		ev.Endpoints = append(ev.Endpoints, b)
	}
	b, err := json.Marshal(ev)
	return append(b, '\n'), err
}
