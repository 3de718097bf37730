package realsched

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
)

// Main runs a test binary's tests with what setup starts shared among
// them, for packages whose tests can use one cluster (each with its own
// workload names). setup gets a testing.TB that lives as long as the
// binary: its cleanups run, last first, after the last test. When setup
// fails no test runs and Main returns 1. Use it from TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(realsched.Main(m, func(tb testing.TB) { shared = realsched.Start(tb, realsched.Options{}) }))
//	}
func Main(m *testing.M, setup func(testing.TB)) int {
	tb := &processTB{}
	done := make(chan struct{})
	// Fatal ends setup's goroutine (runtime.Goexit), as it ends a test's.
	go func() { defer close(done); setup(tb) }()
	<-done
	code := 1
	if !tb.Failed() {
		code = m.Run()
	}
	tb.runCleanups()
	if tb.Failed() && code == 0 {
		code = 1
	}
	return code
}

// processTB is the testing.TB of Main's setup. It implements what the
// helpers of this module call; the embedded interface is nil and only
// satisfies testing.TB's unexported method.
type processTB struct {
	testing.TB

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	ctx      context.Context
	cancel   context.CancelFunc
}

func (p *processTB) Name() string { return "TestMain" }
func (p *processTB) Helper()      {}

func (p *processTB) Log(args ...any) { fmt.Fprintln(os.Stderr, args...) }
func (p *processTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (p *processTB) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
}

func (p *processTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *processTB) FailNow() {
	p.Fail()
	runtime.Goexit()
}

func (p *processTB) Error(args ...any)                 { p.Log(args...); p.Fail() }
func (p *processTB) Errorf(format string, args ...any) { p.Logf(format, args...); p.Fail() }
func (p *processTB) Fatal(args ...any)                 { p.Log(args...); p.FailNow() }
func (p *processTB) Fatalf(format string, args ...any) { p.Logf(format, args...); p.FailNow() }

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// TempDir makes a new folder, removed after the last test.
func (p *processTB) TempDir() string {
	dir, err := os.MkdirTemp("", "realsched-")
	if err != nil {
		p.Fatalf("realsched: temp dir: %v", err)
	}
	p.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Context is canceled before the cleanups run.
func (p *processTB) Context() context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil {
		p.ctx, p.cancel = context.WithCancel(context.Background())
	}
	return p.ctx
}

func (p *processTB) runCleanups() {
	p.mu.Lock()
	cancel, cleanups := p.cancel, p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}
