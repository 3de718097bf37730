package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// maxExecOutput bounds what is kept of a health check command's output.
const maxExecOutput = 64 << 10

// ProbeAddress returns where the agent reaches port (tcp) of the running
// container id: the first address its status reports (containerAddresses),
// else the host binding that publishes the port (an unspecified host
// address is reached on loopback).
func (r *Runtime) ProbeAddress(ctx context.Context, id string, port uint32) (string, error) {
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	ns := res.Container.NetworkSettings
	if ns == nil {
		return "", fmt.Errorf("container %s has no network settings", shortID(id))
	}
	if addrs := containerAddresses(ns); len(addrs) > 0 {
		return net.JoinHostPort(addrs[0], strconv.Itoa(int(port))), nil
	}
	p, ok := network.PortFrom(uint16(port), network.TCP)
	if ok {
		for _, b := range ns.Ports[p] {
			host := b.HostIP
			if !host.IsValid() || host.IsUnspecified() {
				host = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			if b.HostPort != "" {
				return net.JoinHostPort(host.String(), b.HostPort), nil
			}
		}
	}
	return "", fmt.Errorf("container %s has no address and does not publish port %d", shortID(id), port)
}

// ProbeExec runs argv in the running container id through the Engine's
// exec API and returns its exit code and combined output (at most 64 KiB).
func (r *Runtime) ProbeExec(ctx context.Context, id string, argv []string) (int, []byte, error) {
	created, err := r.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, nil, fmt.Errorf("exec in container %s: %w", shortID(id), err)
	}
	att, err := r.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, nil, fmt.Errorf("attach to exec in container %s: %w", shortID(id), err)
	}
	defer att.Close()
	// The hijacked connection does not follow ctx: close it when ctx ends.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	var out bytes.Buffer
	w := &limitWriter{w: &out, n: maxExecOutput}
	if _, err := stdcopy.StdCopy(w, w, att.Reader); err != nil && ctx.Err() == nil {
		return 0, out.Bytes(), fmt.Errorf("read exec output in container %s: %w", shortID(id), err)
	}
	if ctx.Err() != nil {
		return 0, out.Bytes(), ctx.Err()
	}
	ins, err := r.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return 0, out.Bytes(), fmt.Errorf("inspect exec in container %s: %w", shortID(id), err)
	}
	return ins.ExitCode, out.Bytes(), nil
}

// StopInstance stops the container id (its restart policy does not start
// it again); one that is gone or stopped already is fine.
func (r *Runtime) StopInstance(ctx context.Context, id string) error {
	if err := r.stop(ctx, id); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// limitWriter keeps the first n bytes and discards the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
