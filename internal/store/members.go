package store

import (
	"fmt"
	"strings"
)

// MemberOptions are the options of the members of one new etcd cluster:
// member i is named m<i>, keeps its data in dirs[i], serves clients at
// clientURLs[i] and peers at peerURLs[i] (https URLs on fixed ports, known
// to every member before any starts), and takes the rest (TLS, fsync,
// quota, compaction, logger) from base. Start them together: a member is
// ready only once a quorum runs. Whether they run in this process
// (storetest) or each in one of its own (the bench), they are the same
// cluster.
func MemberOptions(base EmbeddedOptions, dirs, peerURLs, clientURLs []string) ([]EmbeddedOptions, error) {
	n := len(dirs)
	if n == 0 {
		return nil, fmt.Errorf("store: cluster members: dirs: %w: at least one required", ErrInvalid)
	}
	if len(peerURLs) != n || len(clientURLs) != n {
		return nil, fmt.Errorf("store: cluster members: %w: %d dirs, %d peer URLs, %d client URLs", ErrInvalid, n, len(peerURLs), len(clientURLs))
	}
	names := make([]string, n)
	initial := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("m%d", i)
		initial[i] = names[i] + "=" + peerURLs[i]
	}
	out := make([]EmbeddedOptions, n)
	for i := range n {
		o := base
		o.Dir, o.Name, o.ClientURL, o.PeerURL = dirs[i], names[i], clientURLs[i], peerURLs[i]
		o.InitialCluster = strings.Join(initial, ",")
		out[i] = o
	}
	return out, nil
}
