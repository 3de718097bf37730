package openapi

import (
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// addWatch documents the watch parameters and the x-ndjson answer
// on the list routes that stream.
func addWatch(paths, schemas obj) {
	for _, m := range []proto.Message{&persysv1.WorkloadView{}, &persysv1.Node{}, &persysv1.ServiceView{}, &persysv1.Event{}} {
		addMessageSchema(schemas, m.ProtoReflect().Descriptor())
	}
	schemas["WatchLine"] = watchLineSchema()
	position := []obj{
		queryParam("since", "Resume after this revision (the revision of the last PUT, DELETE or BOOKMARK read) instead of listing first.",
			obj{"type": "integer", "format": "int64", "minimum": 1}),
		queryParam("since_index", "With since: resume after the change with this index within that revision.", obj{"type": "integer", "minimum": 0}),
	}
	streams := []struct{ path, flag, what string }{
		{"/v1/workloads", "watch", "workloads (with selector)"},
		{"/v1/nodes", "watch", "nodes (their stored record and READY or NOT_READY; no usage)"},
		{"/v1/services", "watch", "services"},
		{"/v1/events", "follow", "events (with workload and type; it starts with the newest 100)"},
	}
	for _, s := range streams {
		get, ok := paths[s.path].(obj)["get"].(obj)
		if !ok {
			continue
		}
		params, _ := get["parameters"].([]obj)
		params = append(params, queryParam(s.flag, "Stream changes of "+s.what+" as application/x-ndjson (WatchLine) instead of answering once.",
			obj{"type": "boolean", "default": false}))
		get["parameters"] = append(params, position...)
		resp := get["responses"].(obj)
		resp["200"].(obj)["content"].(obj)["application/x-ndjson"] = obj{"schema": ref("WatchLine")}
		resp["400"] = errResponse("Invalid input; fields names each invalid field (since, since_index, selector, ...).")
		resp["410"] = errResponse("The position in since is older than the scheduler keeps: list again.")
	}
}

func watchLineSchema() obj {
	return obj{
		"type": "object",
		"description": "One line of a watch stream (application/x-ndjson: one JSON object a line, flushed as it comes). " +
			"A watch without since starts with SNAPSHOT lines (the current list, all at one revision) and a BOOKMARK, " +
			"then sends a PUT or DELETE per change in revision order, a BOOKMARK now and then, and an ERROR line when it ends " +
			"(429: the client fell behind; 503: the scheduler stopped serving it). To resume, pass since (and since_index) " +
			"of the last PUT, DELETE or BOOKMARK read: every later change comes exactly once.",
		"required": []string{"type"},
		"properties": obj{
			"type":     obj{"type": "string", "enum": []string{"SNAPSHOT", "PUT", "DELETE", "BOOKMARK", "ERROR"}},
			"revision": obj{"type": "integer", "format": "int64", "description": "The etcd revision of the change (of the list, for SNAPSHOT)."},
			"index":    obj{"type": "integer", "description": "PUT and DELETE: the change's position within its revision (one transaction may change several objects)."},
			"workload": ref("WorkloadView"),
			"node":     ref("Node"),
			"service":  ref("ServiceView"),
			"event":    ref("Event"),
			"error":    obj{"type": "object", "description": "ERROR: why the stream ended (as Error.error)."},
		},
	}
}
