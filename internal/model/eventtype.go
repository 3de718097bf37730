package model

// EventType is the type of a cluster event (persysv1.Event.Type), one of
// the constants below: the one list of what the scheduler, its identity
// and secrets services emit, so that `persysctl events --type` and alerts
// can rely on the spelling. The stored form is the string itself.
type EventType string

// Event types, by the object they are about.
const (
	// Workloads: the API.
	EventCreated         EventType = "Created"
	EventUpdated         EventType = "Updated"
	EventDeleteRequested EventType = "DeleteRequested"
	EventRetryRequested  EventType = "RetryRequested"
	EventDeleted         EventType = "Deleted"

	// Workloads: placement, moves and retries.
	EventPlaced        EventType = "Placed"
	EventRescheduled   EventType = "Rescheduled"
	EventMoving        EventType = "Moving"
	EventMoved         EventType = "Moved"
	EventMoveBlocked   EventType = "MoveBlocked"
	EventAttemptFailed EventType = "AttemptFailed"
	EventOrphanRemoved EventType = "OrphanRemoved"
	// EventApplyResent: a revision the node reported CREATING for longer
	// than the apply timeout was applied again (a start lost in a crash).
	EventApplyResent EventType = "ApplyResent"
	// EventRepaired: an agent finished a crash leftover (a container
	// created but never started, started; one that would not start,
	// removed), told in its heartbeat.
	EventRepaired EventType = "Repaired"

	// Workloads: observed state changes reported by agents.
	EventPending       EventType = "Pending"
	EventScheduled     EventType = "Scheduled"
	EventCreating      EventType = "Creating"
	EventRunning       EventType = "Running"
	EventStopped       EventType = "Stopped"
	EventFailed        EventType = "Failed"
	EventUnknown       EventType = "Unknown"
	EventDeleting      EventType = "Deleting"
	EventStatusChanged EventType = "StatusChanged"
	// HealthChanged: a running workload's health checks changed its
	// health state or readiness.
	EventHealthChanged EventType = "HealthChanged"

	// Workloads: Git sources.
	EventGitPollFailed    EventType = "GitPollFailed"
	EventGitCommitChanged EventType = "GitCommitChanged"

	// Nodes.
	EventNodeRegistered EventType = "NodeRegistered"
	EventNodeReady      EventType = "NodeReady"
	EventNodeLost       EventType = "NodeLost"
	EventNodeCordoned   EventType = "NodeCordoned"
	EventNodeDraining   EventType = "NodeDraining"
	EventNodeUncordoned EventType = "NodeUncordoned"
	EventNodeJoined     EventType = "NodeJoined"
	EventNodeRevoked    EventType = "NodeRevoked"

	// Identity.
	EventJoinTokenCreated      EventType = "JoinTokenCreated"
	EventJoinTokenRevoked      EventType = "JoinTokenRevoked"
	EventCertificateRevoked    EventType = "CertificateRevoked"
	EventUserCertificateIssued EventType = "UserCertificateIssued"
	EventAPITokenCreated       EventType = "APITokenCreated"
	EventAPITokenRevoked       EventType = "APITokenRevoked"

	// Secrets.
	EventSecretCreated EventType = "SecretCreated"
	EventSecretUpdated EventType = "SecretUpdated"
	EventSecretDeleted EventType = "SecretDeleted"

	// Services (their events name the service as "service/<name>").
	EventServiceCreated         EventType = "ServiceCreated"
	EventServiceUpdated         EventType = "ServiceUpdated"
	EventServiceDeleteRequested EventType = "ServiceDeleteRequested"
	EventServiceDeleted         EventType = "ServiceDeleted"
	EventServiceScaled          EventType = "ServiceScaled"
	EventReplicaCreated         EventType = "ReplicaCreated"
	EventReplicaDeleted         EventType = "ReplicaDeleted"
	EventRolloutComplete        EventType = "RolloutComplete"
	EventRolloutFailed          EventType = "RolloutFailed"
	EventRolledBack             EventType = "RolledBack"
	EventRolloutPaused          EventType = "RolloutPaused"
	EventRolloutResumed         EventType = "RolloutResumed"
	EventRolloutPromoted        EventType = "RolloutPromoted"
	EventRolloutUndone          EventType = "RolloutUndone"

	// The scheduler itself.
	EventLeaderElected EventType = "LeaderElected"

	// Audit events, written by the gateway and the secrets checks (see
	// store.AuditEventType).
	EventAudit EventType = "Audit"
)

// EventTypes lists every event type, in the order declared.
func EventTypes() []EventType {
	return []EventType{
		EventCreated, EventUpdated, EventDeleteRequested, EventRetryRequested, EventDeleted,
		EventPlaced, EventRescheduled, EventMoving, EventMoved, EventMoveBlocked, EventAttemptFailed, EventOrphanRemoved, EventApplyResent, EventRepaired,
		EventPending, EventScheduled, EventCreating, EventRunning, EventStopped, EventFailed, EventUnknown, EventDeleting, EventStatusChanged, EventHealthChanged,
		EventGitPollFailed, EventGitCommitChanged,
		EventNodeRegistered, EventNodeReady, EventNodeLost, EventNodeCordoned, EventNodeDraining, EventNodeUncordoned, EventNodeJoined, EventNodeRevoked,
		EventJoinTokenCreated, EventJoinTokenRevoked, EventCertificateRevoked, EventUserCertificateIssued, EventAPITokenCreated, EventAPITokenRevoked,
		EventSecretCreated, EventSecretUpdated, EventSecretDeleted,
		EventServiceCreated, EventServiceUpdated, EventServiceDeleteRequested, EventServiceDeleted, EventServiceScaled,
		EventReplicaCreated, EventReplicaDeleted, EventRolloutComplete, EventRolloutFailed, EventRolledBack,
		EventRolloutPaused, EventRolloutResumed, EventRolloutPromoted, EventRolloutUndone,
		EventLeaderElected,
		EventAudit,
	}
}

// Known reports whether t is one of EventTypes.
func (t EventType) Known() bool {
	for _, k := range EventTypes() {
		if k == t {
			return true
		}
	}
	return false
}
