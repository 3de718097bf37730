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

// channelLoop holds the node's control stream to the leading scheduler:
// its hello registers the node, and the scheduler's AgentService calls
// come over it. It opens it, answers on it until it ends, and opens it
// again (registering again), following a follower's redirect to the
// leader, until ctx ends.
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
		a.metrics.registerFailures.Inc()
		a.setContact(err)
		if failures == 1 && a.control.target() != on {
			// A follower named the leader: go there at once (once; a
			// second refusal backs off).
			a.log.Info("control stream refused by a follower; opening it on the leader", "scheduler", on, "leader", a.control.target())
			continue
		}
		d := a.retryDelay(&rt, registerMinBackoff)
		// One line for the first failure and then one in ten: a scheduler
		// that is down for minutes would otherwise flood the log.
		if failures == 1 || failures%10 == 0 {
			a.log.Warn("registering on a new control stream failed", "scheduler", on, "failures", failures,
				"next", a.control.target(), "retry_in", d.String(), "err", err)
		}
		if !sleep(ctx, d) {
			return
		}
	}
}

// serveChannel runs one control stream, whose hello registers the node,
// and returns the address it was opened on and why it ended.
func (a *Agent) serveChannel(ctx context.Context, accepted func()) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := a.registration(ctx, a.control.target())
	if err != nil {
		return a.control.target(), err
	}
	stream, on, err := a.control.connect(ctx)
	if err != nil {
		return on, err
	}
	took := false
	unary, streamIC := a.metrics.grpc.Interceptors(a.log)
	var link *nodechannel.Link
	err = nodechannel.Serve(ctx, stream, nodechannel.Agent{NodeID: a.cfg.NodeID, Server: a.svc, Log: a.log,
		Unary: unary, Stream: streamIC, Register: req,
		Registered: func(resp *persysv1.RegisterNodeResponse) error {
			return a.registered(on, req, resp)
		},
		Accepted: func() {
			took = true
			a.log.Info("control stream connected", "scheduler", on)
			accepted()
		},
		Linked: func(l *nodechannel.Link) {
			link = l
			a.setLink(nil, l, on, cancel)
		}})
	if link != nil {
		a.setLink(link, nil, "", nil)
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
// ended), whose stream drop ends, and wakes whoever waits for a link.
func (a *Agent) setLink(old, l *nodechannel.Link, on string, drop context.CancelFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link != old {
		return
	}
	a.link, a.linkOn, a.dropLink = l, on, drop
	close(a.linked)
	a.linked = make(chan struct{})
}

// dropStream ends l's stream, if it is still the open one: channelLoop
// opens a new one, whose hello registers the node again.
func (a *Agent) dropStream(l *nodechannel.Link) {
	a.mu.Lock()
	drop := a.dropLink
	if a.link != l {
		drop = nil
	}
	a.mu.Unlock()
	if drop != nil {
		drop()
	}
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
		if l != nil && !ended(l) {
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

// ended reports whether l's stream ended (it is about to be replaced).
func ended(l *nodechannel.Link) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// linkChange is closed when the control stream's link changes next.
func (a *Agent) linkChange() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.linked
}

// errNoStream: a heartbeat found no open control stream to go on.
var errNoStream = errors.New("the control stream to the scheduler is not open")
