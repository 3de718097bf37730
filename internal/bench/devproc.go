package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	persysclient "github.com/persys-dev/compute/internal/client"
)

// devProc is `persys dev` in a child process of its own: the real
// cluster of one (embedded etcd, scheduler, gateway, an agent on the
// local engine) on loopback ports of its own, in a data folder of its own.
type devProc struct {
	dir    string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error
}

// devArgs are the dev command's flags: every listener on a free
// loopback port (a second dev cluster on this host must not collide),
// metrics off. The agent listens on nothing: it dials out.
func devArgs(dir string) ([]string, error) {
	args := []string{"dev", "--data-dir", dir, "--metrics-port", "0"}
	flags := []string{"--scheduler-listen", "--gateway-listen"}
	for _, f := range flags {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, f, addr)
	}
	return args, nil
}

// freeLoopbackAddr is a loopback address whose port was free a moment
// ago (the child binds it next).
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (d *devProc) start(ctx context.Context, persys string) error {
	args, err := devArgs(d.dir)
	if err != nil {
		return err
	}
	if d.log, err = os.Create(devLog(d.dir)); err != nil {
		return fmt.Errorf("bench: burst: dev log: %w", err)
	}
	d.cmd = exec.Command(persys, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// Its own process group, so a terminal's Ctrl-C reaches the bench
	// alone and the bench stops the cluster in order; and ended with the
	// bench if the bench is killed.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		_ = d.log.Close()
		return fmt.Errorf("bench: burst: start %s dev: %w", persys, err)
	}
	d.exited = make(chan struct{})
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	return ctx.Err()
}

// waitReady waits for the persysctl config the dev command writes and
// for its node to be READY, and returns a client of its gateway.
func (d *devProc) waitReady(ctx context.Context) (*persysclient.Client, error) {
	var api *persysclient.Client
	for {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("bench: burst: dev cluster ended before it was ready (%v): %s", d.err, d.tail())
		default:
		}
		if api == nil {
			// Written once the gateway serves; a half-written file is read again.
			if cfg, _, err := persysclient.LoadConfig(filepath.Join(d.dir, "persysctl.yaml")); err == nil {
				if api, err = persysclient.New(cfg); err != nil {
					return nil, fmt.Errorf("bench: burst: gateway client: %w", err)
				}
			}
		}
		if api != nil {
			if nodes, err := api.ListNodes(ctx); err == nil {
				for _, n := range nodes.GetNodes() {
					if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
						return api, nil
					}
				}
			}
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			if api != nil {
				api.Close()
			}
			return nil, fmt.Errorf("bench: burst: dev cluster not ready: %w: %s", ctx.Err(), d.tail())
		}
	}
}

// tail is the end of the dev cluster's log, for errors.
func (d *devProc) tail() string {
	data, err := os.ReadFile(devLog(d.dir))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// stop ends the dev cluster with SIGTERM (it shuts down in order) and
// kills its process group if it is still there after a while.
func (d *devProc) stop() error {
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	defer d.log.Close()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
	return errors.New("bench: burst: dev cluster did not stop on SIGTERM within 30s; killed")
}
