// Package contract is the one definition of what Persys components agree
// on besides the protobuf messages themselves: the gRPC metadata keys, the
// error domain and the failure reason carried inside errors, and the one
// spelling of enum values wherever they leave protobuf's binary form (REST
// JSON, error bodies, metric labels, CLI tables, logs and events).
//
// The canonical spelling of an enum value is its protobuf name without
// the enum's prefix: IMAGE_NOT_FOUND, not FAILURE_REASON_IMAGE_NOT_FOUND
// nor image_not_found. Name writes it; Parse reads it and the full name.
//
// The package does not import gRPC; package rpcreason attaches a reason
// to a gRPC error and reads it back.
package contract

// gRPC metadata keys.
const (
	// MetadataLeader is the trailer (or header) in which a follower
	// scheduler that refuses a call names the leader's address, so that
	// the caller can retry there.
	MetadataLeader = "x-persys-leader"
	// MetadataUser is the user the gateway authenticated, on every call
	// it forwards to the scheduler for that user.
	MetadataUser = "x-persys-user"
	// MetadataRole is that user's role (admin, operator, viewer).
	MetadataRole = "x-persys-role"
	// MetadataTokenPurpose marks a CreateAPIToken or RevokeAPIToken call
	// made for the caller itself rather than by an admin for anyone; its
	// one value is TokenPurposeConsoleSession.
	MetadataTokenPurpose = "x-persys-token-purpose"
	// MetadataLoginToken is, on a console login, the id of the API token
	// the caller logged in with: the session lives no longer than it and
	// ends when it is revoked.
	MetadataLoginToken = "x-persys-login-token"
)

// TokenPurposeConsoleSession is a web console login: a short-lived API
// token for the caller itself, with its own role, that any gateway can
// authenticate and that its owner revokes at logout.
const TokenPurposeConsoleSession = "console-session"

// ErrorDomain is the domain of the errdetails.ErrorInfo that carries a
// failure reason inside a gRPC error (see ReasonInfo).
const ErrorDomain = "persys.dev"
