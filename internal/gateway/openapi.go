package gateway

import (
	"net/http"
	"sync"

	"github.com/persys-dev/compute/internal/gateway/openapi"
)

// openAPIDocument is the OpenAPI document (package openapi) of the routes,
// built once from the gateway's own body types and limits.
var openAPIDocument = sync.OnceValue(func() []byte {
	b, err := openapi.Build(openapi.Input{
		Bodies: openapi.Bodies{
			SecretRequest:        SecretRequest{},
			CreateToken:          CreateTokenBody{},
			IssueUserCertificate: IssueUserCertificateBody{},
			WhoAmI:               WhoAmI{},
			Scale:                ScaleRequest{},
			Undo:                 UndoRequest{},
			EndpointsEvent:       EndpointsEvent{},
		},
		WaitConditions:     []string{WaitRunning, WaitStopped, WaitDeleted},
		MaxEventsLimit:     maxEventsLimit,
		MaxServiceName:     maxServiceName,
		FollowErrorTrailer: FollowErrorTrailer,
	})
	if err != nil {
		panic("gateway: building the OpenAPI document: " + err.Error())
	}
	return b
})

func (g *gateway) openAPI(w http.ResponseWriter, _ *http.Request) (int, error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument())
	return http.StatusOK, nil
}
