package c2

import "errors"

// ErrNotSupported is returned (and acknowledged as NOT_APPLIED or
// OPERATION_NOT_UNDERSTOOD) when an operation is unknown or the agent
// cannot perform it.
var ErrNotSupported = errors.New("operation not supported")

// ErrNotAllowed is returned when agent.c2.allow does not list an operation.
var ErrNotAllowed = errors.New("operation not allowed by agent.c2.allow")

// ErrChecksumMismatch is returned when a downloaded asset's sha256 differs
// from the one the operation names; the asset is not installed.
var ErrChecksumMismatch = errors.New("sha256 mismatch")

// ErrRolledBack is returned when a new flow did not reach a running state
// and the previous flow file was put back.
var ErrRolledBack = errors.New("the new flow did not reach a running state; rolled back")
