package pulsar

import "errors"

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrInvalidOptions is returned (wrapped, one per problem) by the
	// Validate methods and by the constructors that call them.
	ErrInvalidOptions = errors.New("invalid pulsar options")
	// ErrAuthentication is returned when the broker refused the client's
	// credentials (a wrong or expired token, a client certificate it does
	// not accept).
	ErrAuthentication = errors.New("pulsar broker refused authentication")
	// ErrClosed is returned by operations on a closed client, producer or
	// consumer, and by sends still pending when their producer closed.
	ErrClosed = errors.New("pulsar client closed")
	// ErrCredentials is returned when the token cannot be read from its file
	// or environment variable.
	ErrCredentials = errors.New("reading pulsar credentials")
)
