package api

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// decodeBody reads a small JSON body into dst; an empty body leaves dst
// as it is.
func decodeBody(r *http.Request, dst any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return httperr.New(http.StatusBadRequest, "reading the body: "+err.Error())
	}
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return httperr.New(http.StatusBadRequest, "body: "+err.Error())
	}
	return nil
}

func (a *api) scaleService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var req struct {
		Replicas *int32 `json:"replicas"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, 0, err
	}
	if req.Replicas == nil {
		return nil, 0, httperr.Field("replicas", "required")
	}
	out, err := a.cfg.Services.Scale(r.Context(), r.PathValue("name"), *req.Replicas)
	return out, http.StatusOK, err
}

func (a *api) undoService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var req struct {
		ToRevision uint64 `json:"toRevision"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, 0, err
	}
	out, err := a.cfg.Services.Undo(r.Context(), r.PathValue("name"), req.ToRevision)
	return out, http.StatusOK, err
}

func (a *api) pauseService(paused bool) handler {
	return func(_ http.ResponseWriter, r *http.Request) (any, int, error) {
		out, err := a.cfg.Services.SetPaused(r.Context(), r.PathValue("name"), paused)
		return out, http.StatusOK, err
	}
}

func (a *api) promoteService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	out, err := a.cfg.Services.Promote(r.Context(), r.PathValue("name"))
	return out, http.StatusOK, err
}
