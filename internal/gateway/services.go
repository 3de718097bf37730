package gateway

// The service routes: a Service manifest in, the service's view out; the
// rollout operations are POSTs on the service. Each is one ControlService
// call.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway/audit"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/manifest"
)

func (g *gateway) serviceRoutes() []route {
	return []route{
		{"POST", "/v1/services", writers, g.applyService},
		{"GET", "/v1/services", readers, g.listServices},
		{"GET", "/v1/services/{name}", readers, g.getService},
		{"DELETE", "/v1/services/{name}", writers, g.deleteService},
		{"POST", "/v1/services/{name}/scale", writers, g.scaleService},
		{"GET", "/v1/services/{name}/history", readers, g.serviceHistory},
		{"GET", "/v1/services/{name}/endpoints", readers, g.serviceEndpoints},
		{"POST", "/v1/services/{name}/undo", writers, g.undoService},
		{"POST", "/v1/services/{name}/pause", writers, g.rolloutOp(persysv1grpc.ControlServiceClient.RolloutPause)},
		{"POST", "/v1/services/{name}/resume", writers, g.rolloutOp(persysv1grpc.ControlServiceClient.RolloutResume)},
		{"POST", "/v1/services/{name}/promote", writers, g.rolloutOp(persysv1grpc.ControlServiceClient.RolloutPromote)},
	}
}

func (g *gateway) applyService(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, g.maxBody, "manifest", "a service manifest (YAML or JSON)")
	if err != nil {
		return 0, err
	}
	m, err := manifest.ParseService(body)
	if err != nil {
		return 0, httperr.FromManifest(err)
	}
	req := m.ToApplyServiceRequest()
	audit.NoteWorkload(r, "service/"+req.GetName())
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ApplyService(ctx, req)
	if err != nil {
		return 0, err
	}
	code := http.StatusOK
	if resp.GetResult() == "created" {
		code = http.StatusCreated
	}
	return writeJSON(w, code, resp)
}

func (g *gateway) listServices(w http.ResponseWriter, r *http.Request) (int, error) {
	watch, err := wantsWatch(r, "watch")
	if err != nil {
		return 0, err
	}
	if watch {
		return g.watchServices(w, r)
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListServices(ctx, &persysv1.ListServicesRequest{})
	})
}

func (g *gateway) getService(w http.ResponseWriter, r *http.Request) (int, error) {
	events, err := parseBool(r.URL.Query(), "events")
	if err != nil {
		return 0, err
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetService(ctx, &persysv1.GetServiceRequest{Name: r.PathValue("name"), WithEvents: events})
	})
}

func (g *gateway) deleteService(w http.ResponseWriter, r *http.Request) (int, error) {
	audit.NoteWorkload(r, "service/"+r.PathValue("name"))
	return answer(g, w, r, http.StatusAccepted, func(ctx context.Context) (proto.Message, error) {
		return g.control.DeleteService(ctx, &persysv1.DeleteServiceRequest{Name: r.PathValue("name")})
	})
}

// ScaleRequest is the body of POST /v1/services/{name}/scale.
type ScaleRequest struct {
	Replicas *int32 `json:"replicas"`
}

// UndoRequest is the body of POST /v1/services/{name}/undo (optional).
type UndoRequest struct {
	// ToRevision 0 (or absent) returns to the revision before the current.
	ToRevision uint64 `json:"toRevision,omitempty"`
}

// decodeBody decodes a small JSON body strictly into v; an empty body is
// allowed when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body, err := readBody(w, r, 64<<10, "request body", "")
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return httperr.New(http.StatusBadRequest, "request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httperr.New(http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return nil
}

func (g *gateway) scaleService(w http.ResponseWriter, r *http.Request) (int, error) {
	var req ScaleRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return 0, err
	}
	if req.Replicas == nil {
		return 0, httperr.Field("replicas", "required")
	}
	audit.NoteWorkload(r, "service/"+r.PathValue("name"))
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: r.PathValue("name"), Replicas: *req.Replicas})
	})
}

func (g *gateway) serviceHistory(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.RolloutHistory(ctx, &persysv1.GetServiceRequest{Name: r.PathValue("name")})
	})
}

func (g *gateway) undoService(w http.ResponseWriter, r *http.Request) (int, error) {
	var req UndoRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return 0, err
	}
	audit.NoteWorkload(r, "service/"+r.PathValue("name"))
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.RolloutUndo(ctx, &persysv1.RolloutUndoRequest{Name: r.PathValue("name"), ToRevision: req.ToRevision})
	})
}

// rolloutOp is a route that calls one rollout operation on the service.
func (g *gateway) rolloutOp(call func(persysv1grpc.ControlServiceClient, context.Context, *persysv1.GetServiceRequest, ...grpc.CallOption) (*persysv1.ServiceView, error)) func(http.ResponseWriter, *http.Request) (int, error) {
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		audit.NoteWorkload(r, "service/"+r.PathValue("name"))
		ctx, cancel := g.callCtx(r)
		defer cancel()
		v, err := call(g.control, ctx, &persysv1.GetServiceRequest{Name: r.PathValue("name")})
		if err != nil {
			return 0, err
		}
		return writeJSON(w, http.StatusOK, v)
	}
}
