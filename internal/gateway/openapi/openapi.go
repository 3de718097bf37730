// Package openapi owns the OpenAPI 3.0 document the gateway serves at
// /openapi.json. The paths are written here by hand; the schemas of
// protobuf bodies are derived from their descriptors with the protojson
// mapping, and those of the JSON bodies the gateway defines itself from
// their Go types (Input.Bodies), so neither can drift from what the
// gateway sends. The gateway builds the document once (Build) and checks
// in its tests that it describes exactly the routes it serves.
package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"

	"google.golang.org/protobuf/reflect/protoreflect"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/buildinfo"
	"github.com/persys-dev/compute/internal/manifest"
)

// Bodies holds a value of each Go type the gateway reads or writes as a
// JSON body of its own (every other body is a protobuf message).
type Bodies struct {
	SecretRequest        any // POST /v1/secrets
	CreateToken          any // POST /v1/tokens
	IssueUserCertificate any // POST /v1/users/{name}/certificate
	WhoAmI               any // GET /v1/whoami
	Scale                any // POST /v1/services/{name}/scale
	Undo                 any // POST /v1/services/{name}/undo
	EndpointsEvent       any // a line of GET /v1/services/{name}/endpoints?watch=true
}

// Input is what the document describes that the gateway decides.
type Input struct {
	Bodies Bodies
	// WaitConditions are the wait route's "for" values, the default first.
	WaitConditions []string
	// MaxEventsLimit bounds the events route's limit.
	MaxEventsLimit int
	// MaxServiceName bounds the logs route's service.
	MaxServiceName int
	// FollowErrorTrailer names the trailer of a followed log.
	FollowErrorTrailer string
}

// Build returns the document as indented JSON with a final newline.
func Build(in Input) ([]byte, error) {
	if len(in.WaitConditions) == 0 {
		return nil, fmt.Errorf("openapi: Input.WaitConditions is empty")
	}
	bodies := reflect.ValueOf(in.Bodies)
	for i := range bodies.NumField() {
		if bodies.Field(i).IsNil() {
			return nil, fmt.Errorf("openapi: Input.Bodies.%s is nil", bodies.Type().Field(i).Name)
		}
	}
	b, err := json.MarshalIndent(build(in), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return append(b, '\n'), nil
}

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func jsonContent(schema obj) obj {
	return obj{"application/json": obj{"schema": schema}}
}

func response(desc string, schema obj) obj {
	return obj{"description": desc, "content": jsonContent(schema)}
}

func errResponse(desc string) obj { return response(desc, ref("Error")) }

func pathParam(name, desc string) obj {
	return obj{"name": name, "in": "path", "required": true, "description": desc, "schema": obj{"type": "string"}}
}

func queryParam(name, desc string, schema obj) obj {
	return obj{"name": name, "in": "query", "required": false, "description": desc, "schema": schema}
}

func op(id, summary string, params []obj, body obj, responses obj) obj {
	o := obj{"operationId": id, "summary": summary, "responses": responses}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = body
	}
	return o
}

// common error answers of routes that call the scheduler.
func withErrors(r obj, extra ...int) obj {
	r["500"] = errResponse("Internal error.")
	r["503"] = errResponse("The scheduler is unavailable.")
	r["504"] = errResponse("The scheduler did not answer in time.")
	for _, c := range extra {
		switch c {
		case http.StatusBadRequest:
			r["400"] = errResponse("Invalid input; fields names each invalid field.")
		case http.StatusNotFound:
			r["404"] = errResponse("No such object.")
		case http.StatusConflict:
			r["409"] = errResponse("Conflicts with the current state.")
		case http.StatusRequestEntityTooLarge:
			r["413"] = errResponse("The body is larger than the limit.")
		}
	}
	return r
}

func build(in Input) obj {
	name := pathParam("name", "Workload name.")
	paths := obj{
		"/v1/workloads": obj{
			"post": op("applyWorkload",
				"Create or update a workload from a manifest (declarative, idempotent).",
				nil,
				obj{
					"required":    true,
					"description": "A workload manifest, YAML or JSON (the Content-Type is not used). At most 1 MiB.",
					"content": obj{
						"application/yaml": obj{"schema": ref("Manifest")},
						"application/json": obj{"schema": ref("Manifest")},
					},
				},
				withErrors(obj{
					"200": response("The workload was updated or is unchanged (see result).", ref("ApplyResponse")),
					"201": response("The workload was created.", ref("ApplyResponse")),
				}, 400, 409, 413)),
			"get": op("listWorkloads", "List workloads.",
				[]obj{queryParam("selector", "Label selector, key=value pairs separated by commas; all must match.", obj{"type": "string", "example": "app=web,tier=frontend"})},
				nil,
				withErrors(obj{"200": response("The workloads.", ref("ListWorkloadsResponse"))}, 400)),
		},
		"/v1/manifests": obj{
			"post": op("applyManifests",
				"Create or update several workloads from a manifest stream in one call (declarative, idempotent). "+
					"The whole stream is validated first: one invalid document refuses it (400, fields named documents[i]...) and nothing is applied. "+
					"Then each workload is applied on its own; the answer is 200 with one result per document, in stream order, "+
					"and a workload that could not be applied has errorCode (a gRPC code) and errorMessage instead of result.",
				nil,
				obj{
					"required": true,
					"description": fmt.Sprintf("YAML documents separated by --- lines (empty documents are skipped), or one JSON object; "+
						"each document a workload manifest of at most 1 MiB, with distinct names. At most %d documents and %d bytes in all.",
						manifest.MaxDocuments, manifest.MaxStreamSize),
					"content": obj{
						"application/yaml": obj{"schema": obj{"type": "string"}},
						"application/json": obj{"schema": ref("Manifest")},
					},
				},
				withErrors(obj{
					"200": response("One result per document: created, updated or unchanged, or the item's error.", ref("ApplyWorkloadsResponse")),
				}, 400, 409, 413)),
		},
		"/v1/workloads/{name}": obj{
			"get": op("getWorkload", "Get a workload with its status and placement.",
				[]obj{name, queryParam("events", "Include the workload's recent events.", obj{"type": "boolean", "default": false})},
				nil,
				withErrors(obj{"200": response("The workload.", ref("WorkloadView"))}, 400, 404)),
			"delete": op("deleteWorkload", "Delete a workload; removal from its node happens asynchronously.",
				[]obj{name}, nil,
				withErrors(obj{"202": response("Deletion accepted.", ref("DeleteResponse"))}, 404, 409)),
		},
		"/v1/workloads/{name}/wait": obj{
			"get": op("waitWorkload",
				"Wait until the workload's current revision is RUNNING (for=running) or STOPPED (for=stopped), or it is FAILED, or it is gone (for=deleted). Follows the scheduler's watch stream; does not poll.",
				[]obj{
					name,
					queryParam("for", "Condition to wait for.", obj{"type": "string", "enum": in.WaitConditions, "default": in.WaitConditions[0]}),
					queryParam("timeout", "How long to wait, as a Go duration (60s, 2m) or seconds; at most 1h.", obj{"type": "string", "default": "60s"}),
				},
				nil,
				withErrors(obj{
					"200": response("The condition holds (or the workload FAILED); for=deleted the last view seen before it was gone.", ref("WorkloadView")),
					"408": response("Timed out; the body is the last view seen (or an Error when none was seen).", obj{"oneOf": []obj{ref("WorkloadView"), ref("Error")}}),
				}, 400, 404)),
		},
		"/v1/workloads/{name}/logs": obj{
			"get": op("workloadLogs",
				"The tail of the workload's log as text/plain: container output or a VM's serial console. X-Persys-Node names the node, X-Persys-Truncated says whether the log held more. "+
					"With follow=true the answer streams: chunked text/plain (not SSE, not NDJSON: the log's own bytes), flushed as the workload writes, starting with the tail (or the output since a time) and ending when the client disconnects or the output ends (the container exited). "+
					"A compose workload's lines are prefixed \"SERVICE | \" unless service names one. A client that does not read for 10s is cut off. A failure after the stream began ends the body and sets the X-Persys-Error trailer.",
				[]obj{name,
					queryParam("tail_bytes", "Bytes from the end (default 64 KiB, at most 4 MiB); ignored with since, which starts at that time. tail is an older name for it.", obj{"type": "integer", "minimum": 0}),
					queryParam("follow", "Stream new output as it is written.", obj{"type": "boolean", "default": false}),
					queryParam("since", "With follow: start at output written at or after this RFC 3339 time, or this long ago (5m, 1h). Not for VM consoles, which keep no times.", obj{"type": "string"}),
					queryParam("service", "With follow: only this service of a compose workload.", obj{"type": "string", "maxLength": in.MaxServiceName}),
				},
				nil,
				withErrors(obj{"200": obj{"description": "The log's tail, or with follow=true its stream.",
					"headers": obj{in.FollowErrorTrailer: obj{"description": "Trailer of a followed log: why it ended early.", "schema": obj{"type": "string"}}},
					"content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}}}, 400, 404, 409, 503)),
		},
		"/v1/workloads/{name}/retry": obj{
			"post": op("retryWorkload", "Reset a FAILED workload's retries and place it again.",
				[]obj{name}, nil,
				withErrors(obj{"200": response("The workload after the reset.", ref("WorkloadView"))}, 404, 409)),
		},
		"/v1/nodes": obj{
			"get": op("listNodes", "List nodes.", nil, nil,
				withErrors(obj{"200": response("The nodes.", ref("ListNodesResponse"))})),
		},
		"/v1/nodes/{id}": obj{
			"get": op("getNode", "Get a node.", []obj{pathParam("id", "Node id.")}, nil,
				withErrors(obj{"200": response("The node.", ref("Node"))}, 404)),
		},
		"/v1/nodes/{id}/cordon": obj{
			"post": op("cordonNode", "Stop new placements on a node; what runs there stays. Idempotent.",
				[]obj{pathParam("id", "Node id.")}, nil,
				withErrors(obj{"200": response("The node, cordoned.", ref("Node"))}, 404, 409)),
		},
		"/v1/nodes/{id}/uncordon": obj{
			"post": op("uncordonNode", "Allow placements on a node again. Idempotent.",
				[]obj{pathParam("id", "Node id.")}, nil,
				withErrors(obj{"200": response("The node, uncordoned.", ref("Node"))}, 404, 409)),
		},
		"/v1/nodes/{id}/drain": obj{
			"post": op("drainNode",
				"Cordon a node and move each of its workloads to another node, removing the old copy only once the new one runs. "+
					"Answers when every workload moved or the timeout passed; an incomplete drain is still 200, with complete false and the reason for each workload that did not move.",
				[]obj{
					pathParam("id", "Node id."),
					queryParam("timeout", "How long to wait for replacements, as a Go duration (120s, 2m) or seconds, rounded up to whole seconds; at most 1h. The request itself may take 10 s longer.", obj{"type": "string", "default": "2m"}),
				},
				nil,
				withErrors(obj{"200": response("What moved and what did not.", ref("DrainResponse"))}, 400, 404, 409)),
		},
		"/v1/leader": obj{
			"get": op("getLeader", "The scheduler leader's address and id, as the scheduler that answered knows them.", nil, nil,
				withErrors(obj{"200": response("The leader.", ref("LeaderInfo"))})),
		},
		"/v1/version": obj{
			"get": op("getVersion", "The gateway's build: version, commit, build date, Go version and platform (persysctl version shows it as the server's).", nil, nil,
				withErrors(obj{"200": response("The build.", ref("BuildInfo"))})),
		},
		"/v1/cluster/summary": obj{
			"get": op("getClusterSummary", "Counts of nodes and workloads, capacity and allocation.", nil, nil,
				withErrors(obj{"200": response("The summary.", ref("ClusterSummary"))})),
		},
		"/v1/events": obj{
			"get": op("listEvents", "List recent events, newest last.",
				[]obj{
					queryParam("workload", "Only events of this workload.", obj{"type": "string"}),
					queryParam("limit", "At most this many events.", obj{"type": "integer", "minimum": 1, "maximum": in.MaxEventsLimit}),
				},
				nil,
				withErrors(obj{"200": response("The events.", ref("ListEventsResponse"))}, 400)),
		},
		"/v1/secrets": obj{
			"post": op("putSecret", "Create or update a secret (admin). Values are encrypted at rest and never returned.", nil,
				obj{"required": true, "content": jsonContent(ref("SecretRequest"))},
				withErrors(obj{
					"200": response("The secret was updated (a new version).", ref("SecretInfo")),
					"201": response("The secret was created.", ref("SecretInfo")),
				}, 400, 409, 413)),
			"get": op("listSecrets", "List secrets: names, types and key names, never values (admin).", nil, nil,
				withErrors(obj{"200": response("The secrets.", ref("ListSecretsResponse"))})),
		},
		"/v1/secrets/{name}": obj{
			"get": op("getSecret", "Get a secret's name, type, key names and version, never its values (admin).",
				[]obj{pathParam("name", "Secret name.")}, nil,
				withErrors(obj{"200": response("The secret.", ref("SecretInfo"))}, 400, 404)),
			"put": op("replaceSecret", "Create or update the secret named in the path (admin); the body's name may be left out.",
				[]obj{pathParam("name", "Secret name.")},
				obj{"required": true, "content": jsonContent(ref("SecretRequest"))},
				withErrors(obj{
					"200": response("The secret was updated (a new version).", ref("SecretInfo")),
					"201": response("The secret was created.", ref("SecretInfo")),
				}, 400, 409, 413)),
			"delete": op("deleteSecret", "Delete a secret (admin).",
				[]obj{pathParam("name", "Secret name.")}, nil,
				withErrors(obj{"200": response("Deleted.", ref("DeleteSecretResponse"))}, 400, 404)),
		},
		"/openapi.json": obj{
			"get": op("getOpenAPI", "This document.", nil, nil,
				obj{"200": obj{"description": "The OpenAPI document.", "content": obj{"application/json": obj{"schema": obj{"type": "object"}}}}}),
		},
		"/healthz": obj{
			"get": op("healthz", "Liveness of the gateway.", nil, nil,
				obj{"200": obj{"description": "The gateway runs.", "content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}}}),
		},
	}

	schemas := obj{}
	for _, m := range []protoreflect.ProtoMessage{
		&persysv1.ApplyResponse{}, &persysv1.ApplyWorkloadsResponse{}, &persysv1.WorkloadView{}, &persysv1.ListWorkloadsResponse{},
		&persysv1.DeleteResponse{}, &persysv1.ListNodesResponse{}, &persysv1.Node{},
		&persysv1.ClusterSummary{}, &persysv1.ListEventsResponse{},
		&persysv1.DrainResponse{}, &persysv1.LeaderInfo{},
		&persysv1.SecretInfo{}, &persysv1.ListSecretsResponse{}, &persysv1.DeleteSecretResponse{},
	} {
		addMessageSchema(schemas, m.ProtoReflect().Descriptor())
	}
	schemas["Error"] = obj{
		"type":     "object",
		"required": []string{"error"},
		"properties": obj{
			"error": obj{
				"type":     "object",
				"required": []string{"code", "message"},
				"properties": obj{
					"code":    obj{"type": "integer", "description": "The HTTP status code."},
					"message": obj{"type": "string"},
					"fields": obj{
						"type":        "array",
						"description": "One entry per invalid input field.",
						"items": obj{
							"type":     "object",
							"required": []string{"field", "reason"},
							"properties": obj{
								"field":  obj{"type": "string", "example": "spec.resources.memory"},
								"reason": obj{"type": "string", "example": "must not be negative"},
							},
						},
					},
				},
			},
		},
	}
	schemas["SecretRequest"] = goSchema(reflect.TypeOf(in.Bodies.SecretRequest))
	schemas["SecretRequest"].(obj)["description"] = "A secret: name (DNS subdomain), type (opaque, registry or git; default opaque), " +
		"values base64-encoded in data or as text in stringData; at most 1 MiB in all."
	schemas["BuildInfo"] = goSchema(reflect.TypeOf(buildinfo.Info{}))
	schemas["Manifest"] = goSchema(reflect.TypeOf(manifest.Manifest{}))
	schemas["Manifest"].(obj)["description"] = "A workload manifest (apiVersion " + manifest.APIVersion + ", kind " + manifest.Kind + "). " +
		"Unknown and duplicate keys are refused; every invalid field is named in the error's fields."

	addIdentity(paths, schemas, in.Bodies)
	addServices(paths, schemas, in.Bodies)
	addWatch(paths, schemas)

	return obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":       "Persys Compute gateway",
			"version":     "v1",
			"description": "REST+JSON API of Persys Compute. Every request but /healthz and /openapi.json needs an identity: a client certificate issued by the cluster CA (mutual TLS) or an API token in \"Authorization: Bearer psy_...\". Without one the answer is 401; a role that lacks the route's permission gets 403 naming the permission. Every POST, PUT and DELETE is recorded as an audit event. Bodies are protobuf messages in their JSON mapping: lowerCamel field names, enum values as their names without the enum prefix (RUNNING, IMAGE_NOT_FOUND, as in error bodies and metric labels), 64-bit integers as strings, unset fields omitted.",
		},
		"paths":      paths,
		"components": obj{"schemas": schemas},
	}
}
