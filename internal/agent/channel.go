package agent

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/nodechannel"
)

// controlStream is the agent's end of NodeChannelService.Connect.
type controlStream = grpc.BidiStreamingClient[persysv1.AgentFrame, persysv1.SchedulerFrame]

// channelMinBackoff is the first wait before the control stream is opened
// again; it grows (jittered) while it keeps failing.
const channelMinBackoff = 200 * time.Millisecond

// channelLoop holds the node's control stream to the leading scheduler,
// over which the scheduler sends its AgentService calls: it opens it,
// answers on it until it ends, and opens it again, following a
// follower's redirect to the leader, until ctx ends.
func (a *Agent) channelLoop(ctx context.Context) {
	var rt retry
	failures := 0
	for ctx.Err() == nil {
		accepted := false
		on, err := a.serveChannel(ctx, func() {
			accepted = true
			rt.reset()
			a.metrics.streamConnects.Inc()
		})
		if ctx.Err() != nil {
			return
		}
		if accepted {
			failures = 0
			a.log.Warn("control stream to the scheduler ended; opening it again", "scheduler", on, "err", err)
			continue
		}
		failures++
		d := a.retryDelay(&rt, channelMinBackoff)
		// One line for the first failure and then one in ten: a scheduler
		// that is down for minutes would otherwise flood the log.
		if failures == 1 || failures%10 == 0 {
			a.log.Warn("opening the control stream failed", "scheduler", on, "failures", failures,
				"next", a.control.target(), "retry_in", d.String(), "err", err)
		}
		if !sleep(ctx, d) {
			return
		}
	}
}

// serveChannel runs one control stream and returns the address it was
// opened on and why it ended.
func (a *Agent) serveChannel(ctx context.Context, accepted func()) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, on, err := a.control.connect(ctx)
	if err != nil {
		return on, err
	}
	took := false
	unary, streamIC := a.metrics.grpc.Interceptors(a.log)
	var link *nodechannel.Link
	err = nodechannel.Serve(ctx, stream, nodechannel.Agent{NodeID: a.cfg.NodeID, Server: a.svc, Log: a.log,
		Unary: unary, Stream: streamIC,
		Accepted: func() {
			took = true
			a.log.Info("control stream connected", "scheduler", on)
			accepted()
		},
		Linked: func(l *nodechannel.Link) {
			link = l
			a.setLink(nil, l, on)
		}})
	if link != nil {
		a.setLink(link, nil, "")
	}
	if err == nil {
		err = errors.New("the scheduler closed it")
	}
	if !took {
		a.control.streamFailed(on, err, stream.Trailer())
	}
	return on, err
}

// localAddressToward is the local IP the host uses to reach target
// (host:port), "" when it cannot tell. Dialling UDP sends nothing: it
// only picks the route.
func localAddressToward(target string) string {
	if target == "" {
		return ""
	}
	c, err := net.Dial("udp", target)
	if err != nil {
		return ""
	}
	defer c.Close()
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && ua.IP != nil && !ua.IP.IsUnspecified() {
		return ua.IP.String()
	}
	return ""
}

// streamFailedNoop is for a control plane that does not follow a leader.
func streamFailedNoop(string, error, metadata.MD) {}

// setLink replaces the control stream's link old with l (nil: the stream
// ended) and wakes whoever waits for a link.
func (a *Agent) setLink(old, l *nodechannel.Link, on string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link != old {
		return
	}
	a.link, a.linkOn = l, on
	close(a.linked)
	a.linked = make(chan struct{})
}

// awaitLink returns the open control stream's link and the address its
// stream was opened on, waiting up to d for one; heartbeats go on it only,
// so without one they fail.
func (a *Agent) awaitLink(ctx context.Context, d time.Duration) (*nodechannel.Link, string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		a.mu.Lock()
		l, on, next := a.link, a.linkOn, a.linked
		a.mu.Unlock()
		if l != nil {
			return l, on, nil
		}
		select {
		case <-next:
		case <-t.C:
			return nil, "", errNoStream
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
}

// errNoStream: a heartbeat found no open control stream to go on.
var errNoStream = errors.New("the control stream to the scheduler is not open")
