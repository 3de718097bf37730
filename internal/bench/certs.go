package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/persys-dev/compute/internal/pki"
)

// CertStats says how the certificates of a run were obtained.
type CertStats struct {
	Nodes       int     `json:"nodes"`
	Issued      int     `json:"issued"`
	Reused      int     `json:"reused"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
}

// Certificates lays out, in dir, a CA, the scheduler's, gateway's and
// admin's identities and one agent identity per node id (the scheduler
// requires each node id to be its certificate's common name). It uses
// pki.Bootstrap: once alone, so that the CA and the daemon identities
// exist, then on chunks of node ids from concurrent goroutines. Files of an
// earlier run that still verify are kept, so reruns only check them.
func Certificates(ctx context.Context, dir string, nodeIDs []string, concurrency int) (*pki.Bundle, CertStats, error) {
	st := CertStats{Nodes: len(nodeIDs), Concurrency: concurrency}
	if dir == "" {
		return nil, st, errors.New("bench: certificates: dir: empty")
	}
	if concurrency < 1 {
		return nil, st, fmt.Errorf("bench: certificates: concurrency %d: must be at least 1", concurrency)
	}
	start := time.Now()
	for _, id := range nodeIDs {
		if _, err := os.Stat(filepath.Join(dir, "agent-"+id+".crt")); err != nil {
			st.Issued++
		}
	}
	st.Reused = len(nodeIDs) - st.Issued
	bundle, err := pki.Bootstrap(dir, nil, nil, nil)
	if err != nil {
		return nil, st, fmt.Errorf("bench: certificates: %w", err)
	}
	bundle.Agents = make(map[string]pki.Files, len(nodeIDs))
	chunks := chunk(nodeIDs, concurrency*4)
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
	)
	sem := make(chan struct{}, concurrency)
	for _, ids := range chunks {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := pki.Bootstrap(dir, ids, nil, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			for id, f := range b.Agents {
				bundle.Agents[id] = f
			}
		}()
	}
	wg.Wait()
	st.Seconds = time.Since(start).Seconds()
	if first != nil {
		return nil, st, fmt.Errorf("bench: certificates: %w", first)
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	return bundle, st, nil
}

// chunk splits ids into at most n slices of nearly equal length, in order.
func chunk(ids []string, n int) [][]string {
	if len(ids) == 0 || n < 1 {
		return nil
	}
	if n > len(ids) {
		n = len(ids)
	}
	out := make([][]string, 0, n)
	size, rest := len(ids)/n, len(ids)%n
	for i, at := 0, 0; i < n; i++ {
		l := size
		if i < rest {
			l++
		}
		out = append(out, ids[at:at+l])
		at += l
	}
	return out
}
