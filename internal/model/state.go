package model

// ActualState is what a workload is observed doing; the values equal
// persysv1.ActualState's, so adapters convert with a plain conversion.
type ActualState int32

// Actual states.
const (
	StateUnspecified ActualState = 0
	StatePending     ActualState = 1
	StateScheduled   ActualState = 2
	StateCreating    ActualState = 3
	StateRunning     ActualState = 4
	StateStopped     ActualState = 5
	StateFailed      ActualState = 6
	StateUnknown     ActualState = 7
	StateDeleting    ActualState = 8
	StateMissing     ActualState = 9
)

// DesiredState is what a workload's spec asks for; the values equal
// persysv1.DesiredState's.
type DesiredState int32

// Desired states.
const (
	DesiredUnspecified DesiredState = 0
	DesiredRunning     DesiredState = 1
	DesiredStopped     DesiredState = 2
)

// FailureReason is why a workload failed or waits; the values equal
// persysv1.FailureReason's. Pure code passes reasons through and names only
// the ones it decides itself.
type FailureReason int32

// Reasons pure code decides itself.
const (
	// ReasonNodeLost: the workload's node is NotReady.
	ReasonNodeLost FailureReason = 9
	// ReasonContainerExited: the workload's process ended without being
	// asked to (whatever its exit code).
	ReasonContainerExited FailureReason = 11
)
