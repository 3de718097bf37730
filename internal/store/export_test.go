package store

import "time"

// Test hooks for the keep-alive multiplexer.

// BreakKeepAliveStream cancels the current keep-alive stream, as a network
// failure would.
func (s *Store) BreakKeepAliveStream() { s.ka.breakStream() }

// KeepAliveStreamsOpened is how many keep-alive streams the store opened.
func (s *Store) KeepAliveStreamsOpened() int64 { return s.ka.opened.Load() }

// WaitKeepAliveGoroutines reports whether every keep-alive goroutine ended
// within timeout.
func (s *Store) WaitKeepAliveGoroutines(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.ka.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
