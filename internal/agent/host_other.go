//go:build !linux

package agent

// diskSize is not measured outside Linux.
func diskSize(string) (int64, error) { return 0, nil }

// fsSpace is not measured outside Linux.
func fsSpace(string) (int64, int64, error) { return 0, 0, nil }
