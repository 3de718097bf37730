package gateway

// Watch streams: GET /v1/workloads?watch=true, /v1/nodes?watch=true,
// /v1/services?watch=true and /v1/events?follow=true answer with
// newline-delimited JSON (application/x-ndjson), one object a line,
// flushed as it comes:
//
//	{"type":"SNAPSHOT","revision":41,"workload":{...}}
//	{"type":"BOOKMARK","revision":41}
//	{"type":"PUT","revision":42,"index":0,"workload":{...}}
//	{"type":"DELETE","revision":43,"index":0,"workload":{...}}
//	{"type":"ERROR","error":{"code":429,"message":"watch fell 1024 events behind ..."}}
//
// The object's key is workload, node, service or event, in the protojson
// shape of the list routes. A client resumes with since=REVISION (and
// since_index=INDEX when it stopped inside a revision) of the last PUT,
// DELETE or BOOKMARK it read; a position the scheduler no longer keeps is
// 410 Gone, and the client lists again.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// WatchLine is one line of a watch stream.
type WatchLine struct {
	// Type is SNAPSHOT, PUT, DELETE, BOOKMARK or ERROR.
	Type     string `json:"type"`
	Revision int64  `json:"revision,omitempty"`
	// Index is the change's position within Revision (PUT and DELETE).
	Index    *int32          `json:"index,omitempty"`
	Workload json.RawMessage `json:"workload,omitempty"`
	Node     json.RawMessage `json:"node,omitempty"`
	Service  json.RawMessage `json:"service,omitempty"`
	Event    json.RawMessage `json:"event,omitempty"`
	// Error ends the stream: why it ended.
	Error *ErrorDetail `json:"error,omitempty"`
}

// watchMsg is what the four Watch responses share.
type watchMsg interface {
	GetType() persysv1.WatchEventType
	GetRevision() int64
	GetIndex() int32
}

// watchStream is the client side of one Watch RPC.
type watchStream[M watchMsg] interface {
	Recv() (M, error)
}

// parsePosition reads since and since_index.
func parsePosition(q url.Values) (*persysv1.WatchPosition, error) {
	p := &persysv1.WatchPosition{}
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return nil, httperr.Field("since", fmt.Sprintf("must be a revision (a positive integer), got %q", s))
		}
		p.SinceRevision = n
	}
	if s := q.Get("since_index"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 || n == math.MaxInt32 {
			return nil, httperr.Field("since_index", fmt.Sprintf("must be an index (0 or more), got %q", s))
		}
		if p.SinceRevision == 0 {
			return nil, httperr.Field("since_index", "needs since")
		}
		i := int32(n)
		p.SinceIndex = &i
	}
	return p, nil
}

// serveWatch opens the watch, answers its refusal as an ordinary error,
// then writes every item as a line until the client goes or the stream
// ends (an ERROR line says why).
func serveWatch[M watchMsg](w http.ResponseWriter, r *http.Request, open func(context.Context) (watchStream[M], error),
	object func(M, *WatchLine) error) (int, error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := open(ctx)
	if err != nil {
		return 0, watchRefusal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		return 0, watchRefusal(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		line, err := toLine(m, object)
		if err != nil {
			return http.StatusOK, writeLine(w, rc, line)
		}
		if writeLine(w, rc, line) != nil {
			return http.StatusOK, nil // the client went away
		}
		if m, err = stream.Recv(); err != nil {
			if ctx.Err() != nil {
				return http.StatusOK, nil
			}
			d := httperr.Detail(err)
			return http.StatusOK, writeLine(w, rc, WatchLine{Type: "ERROR", Error: &d})
		}
	}
}

// toLine is m as a line; on error, the ERROR line to end with.
func toLine[M watchMsg](m M, object func(M, *WatchLine) error) (WatchLine, error) {
	line := WatchLine{Type: contract.Name(m.GetType()), Revision: m.GetRevision()}
	if t := m.GetType(); t == persysv1.WatchEventType_WATCH_EVENT_TYPE_PUT || t == persysv1.WatchEventType_WATCH_EVENT_TYPE_DELETE {
		i := m.GetIndex()
		line.Index = &i
	}
	if err := object(m, &line); err != nil {
		return WatchLine{Type: "ERROR", Error: &ErrorDetail{Code: http.StatusInternalServerError, Message: err.Error()}}, err
	}
	return line, nil
}

func writeLine(w http.ResponseWriter, rc *http.ResponseController, line WatchLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	return rc.Flush()
}

// watchRefusal maps a watch refused before its first item; a position
// the scheduler no longer keeps is 410 Gone.
func watchRefusal(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.OutOfRange {
		return httperr.New(http.StatusGone, st.Message())
	}
	return err
}

// objectJSON sets *dst to m as the list routes write it.
func objectJSON(dst *json.RawMessage, m proto.Message) error {
	if !m.ProtoReflect().IsValid() {
		return nil
	}
	b, err := contract.MarshalJSON(jsonOut, m)
	if err != nil {
		return fmt.Errorf("encoding watch item: %w", err)
	}
	*dst = b
	return nil
}

func (g *gateway) watchWorkloads(w http.ResponseWriter, r *http.Request, sel map[string]string) (int, error) {
	pos, err := parsePosition(r.URL.Query())
	if err != nil {
		return 0, err
	}
	req := &persysv1.WatchWorkloadsRequest{Position: pos, LabelSelector: sel}
	return serveWatch(w, r, func(ctx context.Context) (watchStream[*persysv1.WatchWorkloadsResponse], error) {
		return g.control.WatchWorkloads(ctx, req)
	}, func(m *persysv1.WatchWorkloadsResponse, l *WatchLine) error {
		return objectJSON(&l.Workload, m.GetWorkload())
	})
}

func (g *gateway) watchNodes(w http.ResponseWriter, r *http.Request) (int, error) {
	pos, err := parsePosition(r.URL.Query())
	if err != nil {
		return 0, err
	}
	req := &persysv1.WatchNodesRequest{Position: pos}
	return serveWatch(w, r, func(ctx context.Context) (watchStream[*persysv1.WatchNodesResponse], error) {
		return g.control.WatchNodes(ctx, req)
	}, func(m *persysv1.WatchNodesResponse, l *WatchLine) error { return objectJSON(&l.Node, m.GetNode()) })
}

func (g *gateway) watchServices(w http.ResponseWriter, r *http.Request) (int, error) {
	pos, err := parsePosition(r.URL.Query())
	if err != nil {
		return 0, err
	}
	req := &persysv1.WatchServicesRequest{Position: pos}
	return serveWatch(w, r, func(ctx context.Context) (watchStream[*persysv1.WatchServicesResponse], error) {
		return g.control.WatchServices(ctx, req)
	}, func(m *persysv1.WatchServicesResponse, l *WatchLine) error {
		return objectJSON(&l.Service, m.GetService())
	})
}

// followEvents serves GET /v1/events?follow=true with the list's
// workload and type filters.
func (g *gateway) followEvents(w http.ResponseWriter, r *http.Request, workload, typ string) (int, error) {
	pos, err := parsePosition(r.URL.Query())
	if err != nil {
		return 0, err
	}
	req := &persysv1.WatchEventsRequest{Position: pos, Workload: workload, Type: typ}
	return serveWatch(w, r, func(ctx context.Context) (watchStream[*persysv1.WatchEventsResponse], error) {
		return g.control.WatchEvents(ctx, req)
	}, func(m *persysv1.WatchEventsResponse, l *WatchLine) error { return objectJSON(&l.Event, m.GetEvent()) })
}

// wantsWatch reads the boolean query parameter name (watch or follow).
func wantsWatch(r *http.Request, name string) (bool, error) {
	return parseBool(r.URL.Query(), name)
}
