package servicectl_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestTemplateRoleGate: what a service's template asks of its hosts
// (privileged mode, a host path, a host port below 1024) needs
// workloads.host when the service is applied, as a workload's spec does,
// and the refusal names the template's field; going back to a revision an
// admin applied is applying it again, refused to an operator the same way.
func TestTemplateRoleGate(t *testing.T) {
	c := realsched.Start(t, realsched.Options{NoSecrets: true})
	admin := c.Admin(t)
	// The gateway's identity acting for a user, as it forwards calls.
	viaGateway := persysv1grpc.NewControlServiceClient(c.Conn(t, c.Addrs[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	operator := metadata.AppendToOutgoingContext(ctx, contract.MetadataUser, "olga", contract.MetadataRole, "operator")

	tests := []struct {
		name  string
		edit  func(*persysv1.ContainerSpec)
		field string
	}{
		{"privileged", func(c *persysv1.ContainerSpec) { c.Privileged = true }, "container.privileged"},
		{"host path", func(c *persysv1.ContainerSpec) {
			c.Volumes = []*persysv1.Volume{{Type: "bind", Source: "/etc", Target: "/host-etc"}}
		}, "container.volumes[0].source"},
		{"low host port", func(c *persysv1.ContainerSpec) {
			c.Ports = []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: 80, Protocol: "tcp"}}
		}, "container.ports[0].hostPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := serviceRequest(1, "good:1")
			tt.edit(req.Spec.Template.Container)
			_, err := viaGateway.ApplyService(operator, req)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "spec.template."+tt.field+": ") ||
				!strings.Contains(err.Error(), "workloads.host") {
				t.Fatalf("operator's service = %v; want PermissionDenied naming spec.template.%s and workloads.host", err, tt.field)
			}
			if _, err := admin.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"}); status.Code(err) != codes.NotFound {
				t.Fatalf("a refused apply left a service: %v", err)
			}
			// The same spec as a workload: the same gate.
			w := &persysv1.ApplyRequest{Name: "w-" + strings.ReplaceAll(tt.name, " ", "-"), Spec: req.GetSpec().GetTemplate()}
			if _, err := viaGateway.ApplyWorkload(operator, w); status.Code(err) != codes.PermissionDenied ||
				!strings.Contains(err.Error(), "spec."+tt.field+": ") {
				t.Fatalf("operator's workload = %v; want PermissionDenied naming spec.%s", err, tt.field)
			}
		})
	}

	// An admin applies a privileged template, then a plain one.
	priv := serviceRequest(1, "good:1")
	priv.Spec.Template.Container.Privileged = true
	if _, err := admin.ApplyService(ctx, priv); err != nil {
		t.Fatal(err)
	}
	waitRevisions(t, admin, 1)

	// Scale, pause, resume and promote run that template on the caller's
	// word: refused to the operator, naming the template's field; the
	// service stays as the admin left it.
	operatorCalls := []struct {
		call string
		do   func(context.Context) error
	}{
		{"scale", func(ctx context.Context) error {
			_, err := viaGateway.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: "web", Replicas: 3})
			return err
		}},
		{"pause", func(ctx context.Context) error {
			_, err := viaGateway.RolloutPause(ctx, &persysv1.GetServiceRequest{Name: "web"})
			return err
		}},
		{"resume", func(ctx context.Context) error {
			_, err := viaGateway.RolloutResume(ctx, &persysv1.GetServiceRequest{Name: "web"})
			return err
		}},
		{"promote", func(ctx context.Context) error {
			_, err := viaGateway.RolloutPromote(ctx, &persysv1.GetServiceRequest{Name: "web"})
			return err
		}},
	}
	for _, oc := range operatorCalls {
		err := oc.do(operator)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), oc.call+" of service") ||
			!strings.Contains(err.Error(), "spec.template.container.privileged: ") || !strings.Contains(err.Error(), "workloads.host") {
			t.Fatalf("operator's %s of the privileged service = %v; want PermissionDenied naming spec.template.container.privileged and workloads.host", oc.call, err)
		}
	}
	if v, err := admin.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"}); err != nil ||
		v.GetService().GetSpec().GetReplicas() != 1 || v.GetService().GetSpec().GetUpdate().GetPaused() {
		t.Fatalf("after the refused calls: %v, %v; want 1 replica, not paused", v.GetService().GetSpec(), err)
	}
	// The admin may, in the same calls.
	adminAsUser := metadata.AppendToOutgoingContext(ctx, contract.MetadataUser, "ada", contract.MetadataRole, "admin")
	for _, oc := range operatorCalls {
		if err := oc.do(adminAsUser); err != nil {
			t.Fatalf("admin's %s: %v", oc.call, err)
		}
	}
	if v, err := admin.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"}); err != nil || v.GetService().GetSpec().GetReplicas() != 3 {
		t.Fatalf("after the admin's scale: %v, %v; want 3 replicas", v.GetService().GetSpec(), err)
	}
	if _, err := viaGateway.ApplyService(operator, serviceRequest(1, "good:2")); err != nil {
		t.Fatalf("operator's plain template: %v", err)
	}
	waitRevisions(t, admin, 2)
	_, err := viaGateway.RolloutUndo(operator, &persysv1.RolloutUndoRequest{Name: "web", ToRevision: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "to_revision") ||
		!strings.Contains(err.Error(), "spec.template.container.privileged: ") {
		t.Fatalf("operator's undo to the privileged revision = %v; want PermissionDenied naming to_revision and spec.template.container.privileged", err)
	}
	if v, err := admin.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"}); err != nil || v.GetService().GetSpec().GetTemplate().GetContainer().GetPrivileged() {
		t.Fatalf("after the refused undo: %v, %v; want the plain template", v.GetService().GetSpec().GetTemplate(), err)
	}
	if _, err := admin.RolloutUndo(ctx, &persysv1.RolloutUndoRequest{Name: "web", ToRevision: 1}); err != nil {
		t.Fatalf("admin's undo: %v", err)
	}
	// Deleting it takes nothing from the hosts: the operator may, as a
	// workload's delete needs no more than workloads.write.
	if _, err := viaGateway.DeleteService(operator, &persysv1.DeleteServiceRequest{Name: "web"}); err != nil {
		t.Fatalf("operator's delete of the privileged service: %v", err)
	}
}

// waitRevisions waits until web keeps n revisions.
func waitRevisions(t *testing.T, ctl persysv1grpc.ControlServiceClient, n int) {
	t.Helper()
	eventually.Eventually(t, fmt.Sprintf("%d revisions of web", n), wait, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := ctl.RolloutHistory(ctx, &persysv1.GetServiceRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		return len(h.GetRevisions()) == n, fmt.Sprintf("%d revisions", len(h.GetRevisions()))
	})
}

const privilegedService = `kind: Service
metadata: {name: web}
spec:
  replicas: 1
  template:
    type: container
    container: {image: "good:1", privileged: true}
`

// TestServiceRolesThroughGateway: through the real gateway, a viewer
// reads a service and its endpoints as it reads workloads and may not
// write it; an operator writes it but not a template that asks for
// privileged mode (403 naming the field); an admin may.
func TestServiceRolesThroughGateway(t *testing.T) {
	c := realsched.Start(t, realsched.Options{NoSecrets: true})
	gw := c.StartGateway(t, nil)
	as := func(name string, role pki.Role) *client.Client {
		f := c.IssueUser(t, name, role)
		cl, err := client.New(&client.Config{Endpoint: gw.Endpoint, CA: f.CA, Cert: f.Cert, Key: f.Key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	viewer, operator, admin := as("vera", pki.RoleViewer), as("olga", pki.RoleOperator), as("ada", pki.RoleAdmin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plain := []byte(strings.Replace(privilegedService, ", privileged: true", "", 1))

	refused := func(what string, err error, code int, has ...string) {
		t.Helper()
		var api *client.APIError
		if !errors.As(err, &api) || api.Code != code {
			t.Fatalf("%s: %v, want HTTP %d", what, err, code)
		}
		for _, s := range has {
			if !strings.Contains(api.Error(), s) {
				t.Errorf("%s: %q lacks %q", what, api.Error(), s)
			}
		}
	}
	_, err := operator.ApplyService(ctx, []byte(privilegedService))
	refused("operator's privileged service", err, http.StatusForbidden, "spec.template.container.privileged", "workloads.host")
	_, err = viewer.ApplyService(ctx, plain)
	refused("viewer's service", err, http.StatusForbidden, "services.write")
	if _, err := operator.ApplyService(ctx, plain); err != nil {
		t.Fatalf("operator's plain service: %v", err)
	}
	if _, err := viewer.GetService(ctx, "web", false); err != nil {
		t.Errorf("viewer's get: %v", err)
	}
	if _, err := viewer.ServiceEndpoints(ctx, "web"); err != nil {
		t.Errorf("viewer's endpoints: %v", err)
	}
	_, err = viewer.ScaleService(ctx, "web", 2)
	refused("viewer's scale", err, http.StatusForbidden, "services.write")
	if _, err := admin.ApplyService(ctx, []byte(privilegedService)); err != nil {
		t.Fatalf("admin's privileged service: %v", err)
	}
	// Scaling or steering the rollout of the admin's template is running
	// it: the operator is refused with the template's field, the admin
	// is not.
	_, err = operator.ScaleService(ctx, "web", 2)
	refused("operator's scale of the privileged service", err, http.StatusForbidden,
		"scale of service", "spec.template.container.privileged", "workloads.host")
	for _, op := range []string{client.RolloutPause, client.RolloutResume, client.RolloutPromote} {
		_, err = operator.RolloutOp(ctx, "web", op)
		refused("operator's "+op+" of the privileged service", err, http.StatusForbidden,
			op+" of service", "spec.template.container.privileged", "workloads.host")
	}
	if v, err := admin.ScaleService(ctx, "web", 2); err != nil || v.GetService().GetSpec().GetReplicas() != 2 {
		t.Fatalf("admin's scale: %v, %v", v.GetService().GetSpec(), err)
	}
	if _, err := admin.RolloutOp(ctx, "web", client.RolloutPause); err != nil {
		t.Fatalf("admin's pause: %v", err)
	}
	if err := operator.DeleteService(ctx, "web"); err != nil {
		t.Fatalf("operator's delete: %v", err)
	}
}
