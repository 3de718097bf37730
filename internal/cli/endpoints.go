package cli

// get endpoints SERVICE [--watch]: the ready replicas of a service with
// where to reach them, once or as they change.

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
)

func isEndpointsKind(arg string) bool {
	switch strings.ToLower(arg) {
	case "endpoints", "endpoint", "ep":
		return true
	}
	return false
}

// getEndpoints is `get endpoints SERVICE`, and with watch follows them:
// -o json prints each watch line as the gateway sends it (one JSON object
// per line), the other formats print each set as they print one.
func (o *options) getEndpoints(cmd *cobra.Command, c *client.Client, service string, watch bool) error {
	if !watch {
		l, err := c.ServiceEndpoints(cmd.Context(), service)
		if err != nil {
			return err
		}
		return o.printEndpoints(l)
	}
	return c.WatchServiceEndpoints(cmd.Context(), service, func(line []byte) error {
		if o.output == FormatJSON {
			_, err := fmt.Fprintf(o.streams.Out, "%s\n", line)
			return err
		}
		l, err := decodeEndpointsLine(line)
		if err != nil {
			return err
		}
		l.Service = service
		if o.output == FormatYAML {
			fmt.Fprintln(o.streams.Out, "---")
		} else if o.output != FormatName {
			fmt.Fprintf(o.streams.Out, "# %s at revision %d\n", l.GetType(), l.GetRevision())
		}
		return o.printEndpoints(l)
	})
}

// endpointsLine is one line of the gateway's endpoints watch.
type endpointsLine struct {
	Type      string            `json:"type"`
	Revision  int64             `json:"revision"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

func decodeEndpointsLine(line []byte) (*persysv1.ServiceEndpointList, error) {
	var ev endpointsLine
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, fmt.Errorf("endpoints watch: undecodable line: %w", err)
	}
	l := &persysv1.ServiceEndpointList{Type: ev.Type, Revision: ev.Revision}
	for _, raw := range ev.Endpoints {
		ep := &persysv1.ServiceEndpoint{}
		if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{DiscardUnknown: true}, raw, ep); err != nil {
			return nil, fmt.Errorf("endpoints watch: undecodable endpoint: %w", err)
		}
		l.Endpoints = append(l.Endpoints, ep)
	}
	return l, nil
}

func (o *options) printEndpoints(l *persysv1.ServiceEndpointList) error {
	switch {
	case o.structured():
		return printObject(o.streams.Out, o.output, l)
	case o.output == FormatName:
		for _, ep := range l.GetEndpoints() {
			fmt.Fprintf(o.streams.Out, "endpoint/%s\n", ep.GetReplica())
		}
		return nil
	}
	return printEndpointsTable(o.streams.Out, l)
}

func printEndpointsTable(w io.Writer, l *persysv1.ServiceEndpointList) error {
	if len(l.GetEndpoints()) == 0 {
		_, err := fmt.Fprintf(w, "No ready endpoints for service %s.\n", l.GetService())
		return err
	}
	tw := newTable(w)
	row(tw, "", "REPLICA", "NODE", "ADDRESS", "PORTS", "CONTAINER-IP", "REVISION")
	for _, ep := range l.GetEndpoints() {
		var ports []string
		for _, p := range ep.GetPorts() {
			ports = append(ports, fmt.Sprintf("%d->%d/%s", p.GetHostPort(), p.GetContainerPort(), p.GetProtocol()))
		}
		row(tw, "", ep.GetReplica(), ep.GetNodeId(), orNone(ep.GetNodeAddress()), orNone(strings.Join(ports, ",")),
			orNone(ep.GetContainerIp()), strconv.FormatUint(ep.GetRevision(), 10))
	}
	return tw.Flush()
}
