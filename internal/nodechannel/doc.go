// Package nodechannel carries AgentService calls over a node's control
// stream (NodeChannelService.Connect): the agent dials the leading
// scheduler and holds one bidirectional stream, the scheduler sends each
// request as a SchedulerFrame with a call id and the time its answer is
// awaited (a duration, which the agent counts from the frame's arrival,
// so that clocks that disagree do not move it), and the agent answers
// with AgentFrames under the same id. It owns the framing only; who may
// open a stream (certificates, leadership) is the caller's.
//
// Scheduler side: a Hub holds one session per node. The gRPC handler of
// Connect calls Hub.Accept with the node identity of the caller's
// certificate; a hello that carries the node's registration is registered
// (HubConfig.Register) before the session starts, and the answer goes back
// in accepted; Hub.Client (or Hub.Await, which waits for the node to
// connect) returns a persysv1grpc.AgentServiceClient whose calls ride the
// node's current session and fail with codes.Unavailable when the node has
// none or the session ends under them, as a call to an unreachable agent
// would. Log follows are flow-controlled per call (FollowCredit), so a
// slow reader holds back only its own follow. End a lost node's session
// with Close, and every session with CloseAll when leadership ends.
//
// Agent side: Serve runs one stream (its hello carrying Agent.Register)
// until it ends, answering each request with the matching method of a
// persysv1grpc.AgentServiceServer in its own goroutine; the caller
// reconnects.
package nodechannel
