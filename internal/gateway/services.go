package gateway

// The service routes: a Service manifest in, the service's view out; the
// rollout operations are POSTs on the service. Each is one ControlService
// call.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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

// addServiceOpenAPI documents the service routes.
func addServiceOpenAPI(paths, schemas obj) {
	name := pathParam("name", "Service name.")
	view := func(id, summary string) obj {
		return op(id, summary, []obj{name}, nil, withErrors(obj{"200": response("The service.", ref("ServiceView"))}, 404, 409))
	}
	jsonBody := func(schema string, required bool) obj {
		return obj{"required": required, "content": obj{"application/json": obj{"schema": ref(schema)}}}
	}
	paths["/v1/services"] = obj{
		"post": op("applyService", "Create or update a service (kind: Service) from a manifest: replicas of a workload template, rolled out by its update policy.",
			nil,
			obj{"required": true, "description": "A service manifest, YAML or JSON. At most 1 MiB.",
				"content": obj{"application/yaml": obj{"schema": ref("ServiceManifest")}, "application/json": obj{"schema": ref("ServiceManifest")}}},
			withErrors(obj{
				"200": response("The service was updated or is unchanged (see result).", ref("ApplyServiceResponse")),
				"201": response("The service was created.", ref("ApplyServiceResponse")),
			}, 400, 409, 413)),
		"get": op("listServices", "List services with their rollout progress.", nil, nil,
			withErrors(obj{"200": response("The services.", ref("ListServicesResponse"))})),
	}
	paths["/v1/services/{name}"] = obj{
		"get": op("getService", "Get a service: spec, rollout progress (phase, ready/updated/available counts, conditions, good revisions) and replicas.",
			[]obj{name, queryParam("events", "Include the service's recent events.", obj{"type": "boolean", "default": false})}, nil,
			withErrors(obj{"200": response("The service.", ref("ServiceView"))}, 400, 404)),
		"delete": op("deleteService", "Delete a service and, asynchronously, its replicas.", []obj{name}, nil,
			withErrors(obj{"202": response("Deletion accepted.", ref("DeleteServiceResponse"))}, 404, 409)),
	}
	paths["/v1/services/{name}/scale"] = obj{
		"post": op("scaleService", "Set the service's replicas.", []obj{name}, jsonBody("ScaleRequest", true),
			withErrors(obj{"200": response("The service.", ref("ServiceView"))}, 400, 404, 409)),
	}
	paths["/v1/services/{name}/history"] = obj{
		"get": op("serviceHistory", "The kept template revisions, oldest first.", []obj{name}, nil,
			withErrors(obj{"200": response("The revisions.", ref("RolloutHistoryResponse"))}, 404)),
	}
	paths["/v1/services/{name}/endpoints"] = obj{
		"get": op("serviceEndpoints", "The service's endpoints: its ready replicas that are not being removed, with node address, host ports and container IP. With watch=true, an NDJSON stream (application/x-ndjson) of EndpointsEvent lines: the whole set (SNAPSHOT), then the whole new set each time it changes (UPDATE), with the etcd revision.",
			[]obj{name, queryParam("watch", "Stream the endpoints as they change.", obj{"type": "boolean", "default": false})}, nil,
			withErrors(obj{"200": obj{"description": "The endpoints, or the stream of them.", "content": obj{
				"application/json":     obj{"schema": ref("ServiceEndpointList")},
				"application/x-ndjson": obj{"schema": ref("EndpointsEvent")}}}}, 400, 404)),
	}
	paths["/v1/services/{name}/undo"] = obj{
		"post": op("undoService", "Return the template to a kept revision (the one before the current when toRevision is absent).",
			[]obj{name}, jsonBody("UndoRequest", false),
			withErrors(obj{"200": response("The service.", ref("ServiceView"))}, 400, 404, 409)),
	}
	paths["/v1/services/{name}/pause"] = obj{"post": view("pauseService", "Pause the service's update.")}
	paths["/v1/services/{name}/resume"] = obj{"post": view("resumeService", "Resume the service's update.")}
	paths["/v1/services/{name}/promote"] = obj{"post": view("promoteService", "Let a canary update go on past its canaries.")}
	for _, m := range []protoreflect.ProtoMessage{&persysv1.ApplyServiceResponse{}, &persysv1.ServiceView{},
		&persysv1.ListServicesResponse{}, &persysv1.DeleteServiceResponse{}, &persysv1.RolloutHistoryResponse{},
		&persysv1.ServiceEndpointList{}} {
		addMessageSchema(schemas, m.ProtoReflect().Descriptor())
	}
	schemas["ServiceManifest"] = goSchema(reflect.TypeOf(manifest.ServiceManifest{}))
	schemas["ScaleRequest"] = goSchema(reflect.TypeOf(ScaleRequest{}))
	schemas["UndoRequest"] = goSchema(reflect.TypeOf(UndoRequest{}))
	schemas["EndpointsEvent"] = goSchema(reflect.TypeOf(EndpointsEvent{}))
}
