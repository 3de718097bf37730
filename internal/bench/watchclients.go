package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
)

// The watchers' clients. By default each watcher is a client of its own,
// as a thousand persysctl processes or dashboards would be: a gRPC
// watcher has its own mTLS connection to the scheduler and one
// WatchWorkloads stream on it; a gateway watcher has its own HTTPS
// connection (HTTP/2, mutual TLS, as internal/client dials) to the
// gateway and one NDJSON stream (GET /v1/workloads?watch=true). With
// Options.WatchConns the watchers share that many clients, round robin.
// All read with the admin identity.

// openConcurrency bounds the watchers that are dialling and waiting for
// their first item at once.
const openConcurrency = 32

// watchStart says where the watchers start: after revision since, or,
// with list, from the current list (listLen SNAPSHOT items).
type watchStart struct {
	since   int64
	list    bool
	listLen int
}

// watcherSet is one phase's running watchers.
type watcherSet struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func()
	once    sync.Once
}

// close ends every watcher and waits for their goroutines; calling it
// again does nothing.
func (s *watcherSet) close() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		for _, c := range s.closers {
			c()
		}
	})
}

// openWatchers starts a watcher per entry of a.watchers over transport
// (WatchGRPC: to the scheduler at addr; WatchGateway: to the gateway at
// addr) and returns once each has read its first BOOKMARK, or at the
// first failure or after timeout.
func openWatchers(ctx context.Context, transport, addr string, admin pki.Files, conns int, start watchStart, a *account, timeout time.Duration) (*watcherSet, error) {
	tlsCfg, err := pki.ClientTLS(admin, "")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	set := &watcherSet{cancel: cancel}
	n := len(a.watchers)
	if conns > 0 {
		n = min(conns, n)
	}
	runs := make([]watchRun, n)
	for i := range runs {
		var closeFn func()
		if runs[i], closeFn, err = newWatchClient(transport, addr, tlsCfg, start, a); err != nil {
			set.close()
			return nil, fmt.Errorf("bench: watch client %d: %w", i, err)
		}
		set.closers = append(set.closers, closeFn)
	}
	opened := make(chan error, len(a.watchers))
	sem := make(chan struct{}, openConcurrency)
	for i, w := range a.watchers {
		run := runs[i%n]
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			select {
			case sem <- struct{}{}:
			case <-wctx.Done():
				opened <- wctx.Err()
				return
			}
			var once sync.Once
			run(wctx, w, func(err error) {
				once.Do(func() { <-sem; opened <- err })
			})
			once.Do(func() { <-sem; opened <- fmt.Errorf("watcher %d: ended before its first bookmark", w.id) })
		}()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for n := 0; n < len(a.watchers); n++ {
		select {
		case err := <-opened:
			if err != nil {
				set.close()
				return nil, fmt.Errorf("bench: opening watchers: %w", err)
			}
		case <-a.failed:
			set.close()
			return nil, a.err()
		case <-deadline.C:
			set.close()
			return nil, fmt.Errorf("bench: %d of %d watchers open after %s", n, len(a.watchers), timeout)
		}
	}
	return set, nil
}

// watchRun reads one watcher's stream into the ledger; it calls opened
// at the watcher's first bookmark or when it fails before.
type watchRun func(ctx context.Context, w *watchAcct, opened func(error))

// newWatchClient makes one client of transport: a gRPC connection or an
// HTTP client with a transport of its own; closeFn releases it.
func newWatchClient(transport, addr string, tlsCfg *tls.Config, start watchStart, a *account) (run watchRun, closeFn func(), err error) {
	if transport == WatchGRPC {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, nil, err
		}
		cli := persysv1grpc.NewControlServiceClient(conn)
		return func(ctx context.Context, w *watchAcct, opened func(error)) { grpcWatch(ctx, cli, start, a, w, opened) },
			func() { _ = conn.Close() }, nil
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true}
	hc := &http.Client{Transport: tr}
	return func(ctx context.Context, w *watchAcct, opened func(error)) {
			gatewayWatch(ctx, hc, addr, start, a, w, opened)
		},
		tr.CloseIdleConnections, nil
}

// grpcWatch reads one WatchWorkloads stream into the ledger; opened is
// called at its first bookmark or when it fails before.
func grpcWatch(ctx context.Context, cli persysv1grpc.ControlServiceClient, start watchStart, a *account, w *watchAcct, opened func(error)) {
	req := &persysv1.WatchWorkloadsRequest{}
	if !start.list {
		req.Position = &persysv1.WatchPosition{SinceRevision: start.since}
	}
	st, err := cli.WatchWorkloads(ctx, req)
	if err != nil {
		opened(fmt.Errorf("watcher %d: %w", w.id, err))
		return
	}
	bookmarked := false
	for {
		m, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("watcher %d: stream ended: %w", w.id, err)
				opened(err)
				a.fail(err)
			}
			return
		}
		now := time.Now()
		switch m.GetType() {
		case persysv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT:
			w.snapshot++
		case persysv1.WatchEventType_WATCH_EVENT_TYPE_BOOKMARK:
			if !bookmarked {
				bookmarked = true
				opened(startError(w, start))
			}
		case persysv1.WatchEventType_WATCH_EVENT_TYPE_PUT, persysv1.WatchEventType_WATCH_EVENT_TYPE_DELETE:
			wl := m.GetWorkload().GetWorkload()
			a.observe(w, wl.GetName(), wl.GetLabels()[changeLabel], watchPos{m.GetRevision(), m.GetIndex()}, now)
		}
	}
}

// startError checks the list a watcher started with.
func startError(w *watchAcct, start watchStart) error {
	if start.list && w.snapshot != start.listLen {
		return fmt.Errorf("watcher %d: listed %d workloads, want %d", w.id, w.snapshot, start.listLen)
	}
	return nil
}

// gwLine is what the bench reads of a gateway watch line.
type gwLine struct {
	Type     string `json:"type"`
	Revision int64  `json:"revision"`
	Index    int32  `json:"index"`
	Workload *struct {
		Workload struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"workload"`
	} `json:"workload"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// gatewayWatch reads one NDJSON watch stream of the gateway into the
// ledger; opened is called at its first bookmark or when it fails before.
func gatewayWatch(ctx context.Context, hc *http.Client, addr string, start watchStart, a *account, w *watchAcct, opened func(error)) {
	q := url.Values{"watch": {"true"}}
	if !start.list {
		q.Set("since", strconv.FormatInt(start.since, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/workloads?"+q.Encode(), nil)
	if err != nil {
		opened(err)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		opened(fmt.Errorf("watcher %d: %w", w.id, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		opened(fmt.Errorf("watcher %d: %s: %s", w.id, resp.Status, body))
		return
	}
	err = readLines(ctx, resp.Body, start, a, w, opened)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("watcher %d: %w", w.id, err)
		opened(err)
		a.fail(err)
	}
}

// readLines books every line of a gateway watch stream until it ends.
func readLines(ctx context.Context, body io.Reader, start watchStart, a *account, w *watchAcct, opened func(error)) error {
	br := bufio.NewReaderSize(body, 32<<10)
	bookmarked := false
	for {
		raw, err := br.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		now := time.Now()
		var l gwLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("line %q: %w", raw, err)
		}
		switch l.Type {
		case "SNAPSHOT":
			w.snapshot++
		case "BOOKMARK":
			if !bookmarked {
				bookmarked = true
				opened(startError(w, start))
			}
		case "PUT", "DELETE":
			if l.Workload == nil {
				return fmt.Errorf("%s line without a workload", l.Type)
			}
			a.observe(w, l.Workload.Workload.Name, l.Workload.Workload.Labels[changeLabel], watchPos{l.Revision, l.Index}, now)
		case "ERROR":
			if l.Error != nil {
				return fmt.Errorf("ERROR line: %d %s", l.Error.Code, l.Error.Message)
			}
			return errors.New("ERROR line")
		}
	}
}
