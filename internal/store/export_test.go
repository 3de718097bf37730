package store

import "time"

// Test hooks for the keep-alive multiplexer.

// KeepAliveShards is how many keep-alive streams leases are spread over.
const KeepAliveShards = keepAliveShards

// KeepAliveShard is the stream lease id renews on.
func KeepAliveShard(id int64) int { return int(uint64(id) % keepAliveShards) }

// BreakKeepAliveStream cancels the current keep-alive streams, as a
// network failure would.
func (s *Store) BreakKeepAliveStream() {
	for _, k := range s.ka {
		k.breakStream()
	}
}

// KeepAliveStreamsOpened is how many keep-alive streams the store opened.
func (s *Store) KeepAliveStreamsOpened() int64 {
	var n int64
	for _, k := range s.ka {
		n += k.opened.Load()
	}
	return n
}

// WaitKeepAliveGoroutines reports whether every keep-alive goroutine ended
// within timeout.
func (s *Store) WaitKeepAliveGoroutines(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		for _, k := range s.ka {
			k.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
