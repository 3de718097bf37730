package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// streamed is the body a handler returns once it wrote its answer itself
// (a stream); the value is the status code, for the metrics.
type streamed int

// watchLine is one line of a followed stream, on the gateway's shape
// (internal/gateway WatchLine), so that persysctl events --follow reads
// the federation unchanged.
type watchLine struct {
	Type     string        `json:"type"`
	Revision int64         `json:"revision,omitempty"`
	Index    *int32        `json:"index,omitempty"`
	Event    *fedapi.Event `json:"event,omitempty"`
	Error    *lineError    `json:"error,omitempty"`
}

type lineError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// followEvents streams the federation's events (its own and the relayed
// ones) as they are written: a BOOKMARK with the position first and after
// each batch, a PUT per event. since and since_index resume after a
// position a client saw; a position the store no longer keeps ends the
// stream with 410, and the client lists again.
func (a *api) followEvents(w http.ResponseWriter, r *http.Request) (any, int, error) {
	q := r.URL.Query()
	from := fedstore.EventPos{Index: -1}
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return nil, 0, httperr.Field("since", strconv.Quote(s)+" must be a revision >= 1")
		}
		from.Revision = n
	}
	if s := q.Get("since_index"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 || from.Revision == 0 {
			return nil, 0, httperr.Field("since_index", strconv.Quote(s)+" must be an index >= 0, with since")
		}
		from.Index = int32(n)
	}
	if q.Get("limit") != "" {
		return nil, 0, httperr.Field("limit", "does not apply to follow")
	}
	typ := q.Get("type")
	f := fedstore.EventFilter{Cluster: q.Get("cluster"), Object: q.Get("workload")}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	write := func(l watchLine) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		return rc.Flush()
	}
	err := a.cfg.Store.WatchEvents(r.Context(), from, f, func(c fedstore.EventChange) error {
		if typ != "" && c.Event.Type != typ {
			return nil
		}
		idx := c.Pos.Index
		return write(watchLine{Type: "PUT", Revision: c.Pos.Revision, Index: &idx, Event: &c.Event})
	}, func(rev int64) error {
		return write(watchLine{Type: "BOOKMARK", Revision: rev})
	})
	if err != nil && r.Context().Err() == nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, fedstore.ErrCompacted) {
			code = http.StatusGone
		}
		_ = write(watchLine{Type: "ERROR", Error: &lineError{Code: code, Message: err.Error()}})
	}
	return streamed(http.StatusOK), 0, nil
}
