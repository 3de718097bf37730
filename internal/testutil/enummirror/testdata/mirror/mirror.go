// Package mirror holds Go enums that mirror persysv1.NodeState well and
// badly, for the tests of enummirror.
package mirror

import "fmt"

// Good mirrors NodeState.
type Good int

// Good values.
const (
	GoodReady    Good = 1
	GoodNotReady Good = 2
	goodMax           = GoodNotReady
)

// Missing lacks NOT_READY.
type Missing int

// MissingReady is READY.
const MissingReady Missing = 1

// Extra has a value NodeState lacks.
type Extra int

// Extra values.
const (
	ExtraReady    Extra = 1
	ExtraNotReady Extra = 2
	ExtraGone     Extra = 3
)

// Swapped has the names of NodeState on the wrong numbers.
type Swapped int

// Swapped values.
const (
	SwappedReady    Swapped = 2
	SwappedNotReady Swapped = 1
)

// An import the checker does not resolve must not stop it.
var _ = fmt.Sprint(goodMax)
