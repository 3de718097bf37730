package nodechannel

// Flow-control windows of the scheduler's connections and streams, and of
// the agents' to it, fixed on both sides: with gRPC's default, windows
// are sized by bandwidth-delay estimates, which sends a PING (and the peer
// its ack) for nearly every message received on a connection that
// carries a few small messages a second, as a node's control stream
// does. With 10,000 nodes on their own connections those pings and the
// window updates of a 64 KiB window were a fifth of the frames written.
// The estimate would grow a window up to 16 MiB; these bound what one
// peer may have buffered on the other side to less, and still carry a
// full list of 5,000 workloads, or 1,000 submitted ones, in one window.
const (
	StreamWindowBytes = 1 << 20
	ConnWindowBytes   = 2 << 20
)
