package leaderconn

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
)

// noFollow is the NoFollow call option; the Pool reads it and does not
// pass it on.
type noFollow struct{ grpc.EmptyCallOption }

// NoFollow makes a call that a follower refuses fail with an error
// wrapping ErrLeaderMoved instead of being re-sent to the leader.
func NoFollow() grpc.CallOption { return noFollow{} }

// answeredBy is the AnsweredBy call option.
type answeredBy struct {
	grpc.EmptyCallOption
	addr *string
}

// AnsweredBy stores in *addr the address of the call's last attempt: the
// scheduler that answered or refused it.
func AnsweredBy(addr *string) grpc.CallOption { return answeredBy{addr: addr} }

// callOpts splits the Pool's own options from those passed to gRPC.
func callOpts(opts []grpc.CallOption) (rest []grpc.CallOption, follow bool, addr *string) {
	follow = true
	for _, o := range opts {
		switch o := o.(type) {
		case noFollow:
			follow = false
		case answeredBy:
			addr = o.addr
		default:
			rest = append(rest, o)
		}
	}
	return rest, follow, addr
}

// LeaderHint returns the leader address named in mds, if any.
func LeaderHint(mds ...metadata.MD) string {
	for _, md := range mds {
		for _, v := range md.Get(contract.MetadataLeader) {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return ""
}

// redirectCode reports whether a refusal with code may carry a leader hint.
func redirectCode(c codes.Code) bool {
	return c == codes.FailedPrecondition || c == codes.Unavailable
}

// usableHint returns the leader a refusal names when the caller should go
// there: a valid address other than the one that refused.
func usableHint(err error, md metadata.MD, from string) string {
	hint := LeaderHint(md)
	if hint == "" || hint == from || !redirectCode(status.Code(err)) || ValidAddress(hint) != nil {
		return ""
	}
	return hint
}

// attemptFunc makes one attempt of a call on cc. sent reports whether the
// request may have reached the scheduler; md is the answer's header and
// trailer metadata.
type attemptFunc func(cc *grpc.ClientConn) (md metadata.MD, sent bool, err error)

// nextConfigured returns the first configured address not in tried.
func (p *Pool) nextConfigured(tried []string) string {
	for _, a := range p.addrs {
		if !slices.Contains(tried, a) {
			return a
		}
	}
	return ""
}

// after returns the configured address after addr, round robin (the
// first when addr is not configured).
func (p *Pool) after(addr string) string {
	return p.addrs[(slices.Index(p.addrs, addr)+1)%len(p.addrs)]
}

// run makes a call under the rules of Pool and returns the address of its
// last attempt.
func (p *Pool) run(ctx context.Context, method string, follow bool, attempt attemptFunc) (string, error) {
	start := p.Current()
	addr := start
	var tried []string
	redirected := false
	for {
		cc, err := p.conn(addr)
		if err != nil {
			return addr, err
		}
		md, sent, err := attempt(cc)
		tried = append(tried, addr)
		if err == nil {
			p.move(start, addr, method)
			return addr, nil
		}
		if hint := usableHint(err, md, addr); hint != "" {
			code := status.Code(err)
			if !follow {
				p.move(start, hint, method)
				return addr, fmt.Errorf("%w from %s to %s: %w", ErrLeaderMoved, addr, hint, err)
			}
			if redirected || slices.Contains(tried, hint) || ctx.Err() != nil {
				// One redirect per call; the next call starts at the
				// leader named last.
				p.move(start, hint, method)
				return addr, err
			}
			if _, derr := p.conn(hint); derr != nil {
				p.log.Warn("cannot follow scheduler leader", "from", addr, "leader", hint, "method", method, "err", derr)
				return addr, err
			}
			p.log.Info("following scheduler leader", "from", addr, "leader", hint, "method", method, "code", code.String())
			redirected = true
			addr = hint
			continue
		}
		if !sent && status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			if next := p.nextConfigured(tried); next != "" {
				p.log.Warn("scheduler unreachable, trying the next", "from", addr, "to", next, "method", method, "err", err)
				addr = next
				continue
			}
		}
		switch {
		case sent && status.Code(err) == codes.Unavailable:
			// Reached, but it serves no one and names no leader (cut off
			// from etcd, or loading): the next call tries the next one.
			p.move(start, p.after(addr), method)
		case sent:
			// The scheduler answered: it becomes current.
			p.move(start, addr, method)
		}
		return addr, err
	}
}

var unaryDesc = &grpc.StreamDesc{}

// Invoke makes a unary call, following the leader (see Pool).
func (p *Pool) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	opts, follow, answered := callOpts(opts)
	addr, err := p.run(ctx, method, follow, func(cc *grpc.ClientConn) (metadata.MD, bool, error) {
		var hdr, trl metadata.MD
		o := append(slices.Clip(opts), grpc.Header(&hdr), grpc.Trailer(&trl))
		// As grpc.ClientConn.Invoke does, through a stream, so that a
		// failure to open it tells that nothing was sent.
		cs, err := cc.NewStream(ctx, unaryDesc, method, o...)
		if err != nil {
			return nil, false, err
		}
		if err := cs.SendMsg(args); err != nil {
			return metadata.Join(hdr, trl), true, err
		}
		err = cs.RecvMsg(reply)
		return metadata.Join(hdr, trl), true, err
	})
	if answered != nil {
		*answered = addr
	}
	return err
}
