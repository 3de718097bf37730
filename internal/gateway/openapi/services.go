package openapi

import (
	"reflect"

	"google.golang.org/protobuf/reflect/protoreflect"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// addServices documents the service routes.
func addServices(paths, schemas obj, bodies Bodies) {
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
	schemas["ScaleRequest"] = goSchema(reflect.TypeOf(bodies.Scale))
	schemas["UndoRequest"] = goSchema(reflect.TypeOf(bodies.Undo))
	schemas["EndpointsEvent"] = goSchema(reflect.TypeOf(bodies.EndpointsEvent))
}
