package edgeagent

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrInvalidID is returned when a flowfile ID is not a canonical UUID.
	ErrInvalidID = errors.New("invalid flowfile id")
	// ErrInvalidSpec is returned when a processor spec cannot be registered.
	ErrInvalidSpec = errors.New("invalid processor spec")
	// ErrInvalidExpression is returned when a ${...} expression does not parse.
	ErrInvalidExpression = errors.New("invalid expression")
	// ErrExpressionEval is returned when an expression cannot be evaluated
	// (for example a number function on a non-number).
	ErrExpressionEval = errors.New("evaluating expression")
	// ErrInvalidConfig is returned (wrapped in ConfigErrors) when a flow does
	// not validate.
	ErrInvalidConfig = errors.New("invalid flow configuration")
	// ErrNotBuiltIn is returned when a flow names a processor type this
	// binary was built without.
	ErrNotBuiltIn = errors.New("processor type not built into this binary")
	// ErrRepositoryLocked is returned when another agent holds the data
	// directory's repository.
	ErrRepositoryLocked = errors.New("repository is locked by another process")
	// ErrRepositoryFormat is returned when the data file was written by an
	// unknown format version.
	ErrRepositoryFormat = errors.New("unknown repository format version")
	// ErrRepositoryCorrupt is returned when the data file fails its checks.
	ErrRepositoryCorrupt = errors.New("repository data file is corrupt")
	// ErrRepositoryClosed is returned by operations on a closed repository.
	ErrRepositoryClosed = errors.New("repository is closed")
	// ErrContentTooLarge is returned when content exceeds the per-flowfile limit.
	ErrContentTooLarge = errors.New("content too large")
	// ErrFlowFileNotHandled is returned by Commit when a flowfile the session
	// got or created was neither transferred, removed nor returned.
	ErrFlowFileNotHandled = errors.New("flowfile not transferred, removed or returned")
	// ErrUnknownFlowFile is returned (via panic-free session errors) when a
	// flowfile not owned by the session is passed to it.
	ErrUnknownFlowFile = errors.New("flowfile does not belong to this session")
	// ErrUnknownRelationship is returned when a flowfile is transferred to a
	// relationship the processor does not have.
	ErrUnknownRelationship = errors.New("unknown relationship")
	// ErrSessionClosed is returned when a session is used after its trigger ended.
	ErrSessionClosed = errors.New("session is closed")
)

// ConfigError is one problem in a flow file, with its position.
type ConfigError struct {
	File string // path of the flow file
	Line int    // 1-based; 0 when unknown
	Col  int    // 1-based; 0 when unknown
	Path string // where in the document: processors[1].properties.topic
	Msg  string
}

// Error renders FILE:LINE:COL: path: message.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	fmt.Fprintf(&b, ":%d:%d: ", e.Line, e.Col)
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ConfigErrors is every problem found in a flow, in document order.
type ConfigErrors []*ConfigError

// Error renders one problem per line.
func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors (for errors.Is and errors.As).
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
