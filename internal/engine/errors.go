package engine

import "errors"

// Sentinel errors of the engine. Test for them with errors.Is.
var (
	// ErrUnknownProcessor is returned when an operation names a processor
	// the running flow does not have.
	ErrUnknownProcessor = errors.New("no such processor in the running flow")
	// ErrUnknownConnection is returned when an operation names a connection
	// the running flow does not have.
	ErrUnknownConnection = errors.New("no such connection in the running flow")
	// ErrNotRunning is returned when stopping a processor that is not running.
	ErrNotRunning = errors.New("not running")
	// ErrAlreadyRunning is returned when starting a processor that runs.
	ErrAlreadyRunning = errors.New("already running")
)
