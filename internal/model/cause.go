package model

// AssignmentCause says why a workload was placed (persysv1.Assignment.Cause,
// stored as the string itself).
type AssignmentCause string

// Assignment causes.
const (
	// CauseNew: the workload had no node (created, or pending until now).
	CauseNew AssignmentCause = "new"
	// CauseNodeLost: its node was lost past the grace period.
	CauseNodeLost AssignmentCause = "node-lost"
	// CauseDrain: its node is draining; the old copy runs until the new
	// one does.
	CauseDrain AssignmentCause = "drain"
)
