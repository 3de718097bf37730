// Package client is the Go client of the gateway's REST API, used by
// persysctl and the end-to-end tests, plus persysctl's config file. Every
// call goes over HTTPS with the user's client certificate; answers that are
// not 2xx come back as *APIError with the gateway's message and field
// errors. Callers bound every call with their context.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/buildinfo"
	"github.com/persys-dev/compute/internal/pki"
)

// DefaultCallTimeout bounds a call whose context has no deadline. Wait
// derives its own deadline from its timeout instead.
const DefaultCallTimeout = 60 * time.Second

// maxResponseSize bounds a response body read into memory.
const maxResponseSize = 64 << 20

// FieldError names one invalid input field.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// APIError is a non-2xx answer of the gateway.
type APIError struct {
	// Code is the HTTP status code.
	Code    int
	Message string
	Fields  []FieldError
	// Reason is the failure enum the gateway named, such as INVALID_SPEC.
	Reason string
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.Reason != "" {
		msg = e.Reason + ": " + msg
	}
	if len(e.Fields) == 0 {
		return msg
	}
	parts := make([]string, 0, len(e.Fields))
	for _, f := range e.Fields {
		if f.Field == "" {
			parts = append(parts, f.Reason)
		} else {
			parts = append(parts, f.Field+": "+f.Reason)
		}
	}
	return msg + " (" + strings.Join(parts, "; ") + ")"
}

// IsNotFound reports whether err is an APIError with code 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

// Client calls the gateway.
type Client struct {
	base *url.URL
	http *http.Client
	// token, when set, goes in every request's Authorization header.
	token string
}

// New returns a client for the gateway named in c, authenticating with c's
// client certificate and trusting only c's CA.
func New(c *Config) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	if c.Token != "" {
		// A token authenticates alone: no certificate is presented, so
		// the gateway cannot prefer the certificate's identity.
		cas, err := pki.ReadCertFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("client config: ca: %w", err)
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
		cl, err := NewWithTLS(c.Endpoint, tlsCfg)
		if err != nil {
			return nil, err
		}
		cl.token = c.Token
		return cl, nil
	}
	tlsCfg, err := pki.ClientTLS(pki.Files{CA: c.CA, Cert: c.Cert, Key: c.Key}, "")
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	return NewWithTLS(c.Endpoint, tlsCfg)
}

// NewWithTLS returns a client for the gateway at endpoint (an https URL)
// using tlsCfg, for callers that hold the TLS configuration in memory.
func NewWithTLS(endpoint string, tlsCfg *tls.Config) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("endpoint: must be an https:// URL with a host, got %q", endpoint)
	}
	if tlsCfg == nil {
		return nil, errors.New("client: TLS config is required")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the gateway is reached directly; proxies cannot carry client certificates
	tr.TLSClientConfig = tlsCfg.Clone()
	tr.ForceAttemptHTTP2 = true
	return &Client{base: u, http: &http.Client{Transport: tr}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// unmarshal reads the gateway's JSON: enums in the canonical spelling, or
// as full names from a gateway of an older build.
var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// do sends one request and decodes a 2xx body into out (when not nil).
// okCodes lists extra non-2xx codes whose body is out rather than an error
// (the wait route's 408); it returns the HTTP status code.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out proto.Message, okCodes ...int) (int, error) {
	code, _, data, err := c.send(ctx, method, path, query, body)
	if err != nil {
		return code, err
	}
	okBody := code/100 == 2
	for _, ok := range okCodes {
		if code == ok && !isErrorBody(data) {
			okBody = true
		}
	}
	if !okBody {
		return code, decodeError(code, data)
	}
	if out != nil {
		if err := contract.UnmarshalJSON(unmarshal, data, out); err != nil {
			return code, fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return code, nil
}

// send makes one request (every request of the client goes through it)
// and returns the status code, the answer's headers and its body, read up
// to maxResponseSize.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body []byte) (int, http.Header, []byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	// path is already escaped (workloadPath, url.PathEscape).
	target := c.base.String() + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("%s %s: reading answer: %w", method, path, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// isErrorBody reports whether data is the gateway's error envelope.
func isErrorBody(data []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	_, ok := probe["error"]
	return ok
}

func decodeError(code int, data []byte) error {
	var body struct {
		Error struct {
			Code    int          `json:"code"`
			Message string       `json:"message"`
			Fields  []FieldError `json:"fields"`
			Reason  string       `json:"reason"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &body); err == nil && body.Error.Message != "" {
		return &APIError{Code: code, Message: body.Error.Message, Fields: body.Error.Fields, Reason: body.Error.Reason}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	return &APIError{Code: code, Message: fmt.Sprintf("gateway answered %d: %s", code, msg)}
}

func workloadPath(name string, rest ...string) string {
	return "/v1/workloads/" + url.PathEscape(name) + strings.Join(rest, "")
}

// Apply sends a manifest (YAML or JSON) and returns the gateway's answer;
// Result is "created", "updated" or "unchanged".
func (c *Client) Apply(ctx context.Context, manifest []byte) (*persysv1.ApplyResponse, error) {
	if manifest == nil {
		manifest = []byte{}
	}
	out := &persysv1.ApplyResponse{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/workloads", nil, manifest, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyAll sends a manifest stream (YAML documents separated by --- lines,
// or one JSON object) and returns one result per document, in order. An
// invalid stream is an *APIError naming documents[i] fields, and nothing
// is applied; otherwise each result says created, updated or unchanged, or
// carries the item's own ErrorCode (a gRPC code) and ErrorMessage.
func (c *Client) ApplyAll(ctx context.Context, manifests []byte) (*persysv1.ApplyWorkloadsResponse, error) {
	if manifests == nil {
		manifests = []byte{}
	}
	out := &persysv1.ApplyWorkloadsResponse{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/manifests", nil, manifests, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetWorkload returns one workload with its status and placement, and its
// recent events when events is true.
func (c *Client) GetWorkload(ctx context.Context, name string, events bool) (*persysv1.WorkloadView, error) {
	var q url.Values
	if events {
		q = url.Values{"events": {"true"}}
	}
	out := &persysv1.WorkloadView{}
	if _, err := c.do(ctx, http.MethodGet, workloadPath(name), q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListWorkloads returns every workload.
func (c *Client) ListWorkloads(ctx context.Context) (*persysv1.ListWorkloadsResponse, error) {
	return c.ListWorkloadsSelector(ctx, nil)
}

// ListWorkloadsSelector returns the workloads whose labels match every
// key=value of selector.
func (c *Client) ListWorkloadsSelector(ctx context.Context, selector map[string]string) (*persysv1.ListWorkloadsResponse, error) {
	var q url.Values
	if len(selector) > 0 {
		keys := make([]string, 0, len(selector))
		for k := range selector {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + selector[k]
		}
		q = url.Values{"selector": {strings.Join(parts, ",")}}
	}
	out := &persysv1.ListWorkloadsResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/workloads", q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteWorkload asks for a workload's deletion; removal from its node
// happens asynchronously (Wait with "deleted" follows it).
func (c *Client) DeleteWorkload(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, workloadPath(name), nil, nil, &persysv1.DeleteResponse{})
	return err
}

// RetryWorkload resets a failed workload's retries and returns its view.
func (c *Client) RetryWorkload(ctx context.Context, name string) (*persysv1.WorkloadView, error) {
	out := &persysv1.WorkloadView{}
	if _, err := c.do(ctx, http.MethodPost, workloadPath(name, "/retry"), nil, []byte{}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Wait blocks until the workload's current revision is running (forState
// "running"), stopped ("stopped"), or it is gone ("deleted"); FAILED ends
// the running and stopped waits and is returned without error, so callers
// check the state. When timeout passes first, Wait returns the last view it
// got together with an *APIError of code 408.
func (c *Client) Wait(ctx context.Context, name, forState string, timeout time.Duration) (*persysv1.WorkloadView, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("wait: timeout must be positive, got %s", timeout)
	}
	// The gateway answers at the timeout; leave room for the answer.
	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	q := url.Values{"for": {forState}, "timeout": {timeout.String()}}
	out := &persysv1.WorkloadView{}
	code, err := c.do(ctx, http.MethodGet, workloadPath(name, "/wait"), q, nil, out, http.StatusRequestTimeout)
	if err != nil {
		return nil, err
	}
	if code == http.StatusRequestTimeout {
		state := contract.Name(out.GetStatus().GetState())
		msg := fmt.Sprintf("timed out after %s waiting for workload %q to be %s (state %s", timeout, name, forState, state)
		if r := out.GetStatus().GetReason(); r != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
			msg += ", reason " + contract.Name(r)
		}
		if m := out.GetStatus().GetMessage(); m != "" {
			msg += ": " + m
		}
		return out, &APIError{Code: code, Message: msg + ")"}
	}
	return out, nil
}

// ListNodes returns every node.
func (c *Client) ListNodes(ctx context.Context) (*persysv1.ListNodesResponse, error) {
	out := &persysv1.ListNodesResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetNode returns one node.
func (c *Client) GetNode(ctx context.Context, id string) (*persysv1.Node, error) {
	out := &persysv1.Node{}
	if _, err := c.do(ctx, http.MethodGet, nodePath(id), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Summary returns the cluster summary.
func (c *Client) Summary(ctx context.Context) (*persysv1.ClusterSummary, error) {
	out := &persysv1.ClusterSummary{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/cluster/summary", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListEvents returns recent events, of one workload when workload is not
// empty, at most limit of them when limit > 0.
func (c *Client) ListEvents(ctx context.Context, workload string, limit int) (*persysv1.ListEventsResponse, error) {
	q := url.Values{}
	if workload != "" {
		q.Set("workload", workload)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	out := &persysv1.ListEventsResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

func nodePath(id string, rest ...string) string {
	return "/v1/nodes/" + url.PathEscape(id) + strings.Join(rest, "")
}

// CordonNode stops new placements on a node and returns it.
func (c *Client) CordonNode(ctx context.Context, id string) (*persysv1.Node, error) {
	out := &persysv1.Node{}
	if _, err := c.do(ctx, http.MethodPost, nodePath(id, "/cordon"), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// UncordonNode allows placements on a node again and returns it.
func (c *Client) UncordonNode(ctx context.Context, id string) (*persysv1.Node, error) {
	out := &persysv1.Node{}
	if _, err := c.do(ctx, http.MethodPost, nodePath(id, "/uncordon"), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DefaultDrainTimeout is the gateway's drain timeout when none is given.
const DefaultDrainTimeout = 2 * time.Minute

// DrainNode cordons a node and moves its workloads elsewhere, waiting up to
// timeout (0: DefaultDrainTimeout) for the replacements. An incomplete drain
// is not an error: check Complete and each workload's Result.
func (c *Client) DrainNode(ctx context.Context, id string, timeout time.Duration) (*persysv1.DrainResponse, error) {
	if timeout < 0 {
		return nil, fmt.Errorf("drain: timeout must not be negative, got %s", timeout)
	}
	var q url.Values
	if timeout > 0 {
		q = url.Values{"timeout": {timeout.String()}}
	} else {
		timeout = DefaultDrainTimeout
	}
	// The gateway allows the scheduler 10 s past the timeout; leave room
	// for that and the answer.
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	out := &persysv1.DrainResponse{}
	if _, err := c.do(ctx, http.MethodPost, nodePath(id, "/drain"), q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ServerVersion returns the gateway's build.
func (c *Client) ServerVersion(ctx context.Context) (buildinfo.Info, error) {
	var info buildinfo.Info
	code, _, data, err := c.send(ctx, http.MethodGet, "/v1/version", nil, nil)
	if err != nil {
		return info, err
	}
	if code != http.StatusOK {
		return info, decodeError(code, data)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("GET /v1/version: decoding answer: %w", err)
	}
	return info, nil
}

// Leader returns the scheduler leader as the scheduler that answered
// knows it.
func (c *Client) Leader(ctx context.Context) (*persysv1.LeaderInfo, error) {
	out := &persysv1.LeaderInfo{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/leader", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
