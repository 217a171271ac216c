package provenance

import "errors"

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrCorruptEvent is returned when a stored or received event record does
	// not decode: unknown codec version, truncated, or malformed.
	ErrCorruptEvent = errors.New("corrupt provenance event")
	// ErrInvalidEvent is returned when an event cannot be encoded or appended:
	// an unknown event type or a zero flowfile ID.
	ErrInvalidEvent = errors.New("invalid provenance event")
	// ErrNotInitialized is returned when the provenance buckets do not exist
	// in the database: EnsureBuckets was never called in a write transaction.
	ErrNotInitialized = errors.New("provenance buckets not initialized")
)
