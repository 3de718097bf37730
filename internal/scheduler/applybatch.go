package scheduler

import (
	"sync"

	"github.com/persys-dev/compute/internal/manifest"
)

// MaxApplyItems bounds the workloads of one ApplyWorkloads call.
const MaxApplyItems = manifest.MaxApplyItems

// forEach runs fn for 0..n-1, at most limit at once, and returns when
// every call has.
func forEach(n, limit int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}
