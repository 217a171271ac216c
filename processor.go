package edgeagent

import (
	"context"
	"io"
	"log/slog"
)

// Relationship is a named outcome of a processor (success, failure, ...).
// Each relationship must be connected or listed as auto-terminated.
type Relationship struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Common relationships.
var (
	RelSuccess  = Relationship{Name: "success", Description: "Flowfiles processed successfully."}
	RelFailure  = Relationship{Name: "failure", Description: "Flowfiles that could not be processed; the error is in the error.message attribute."}
	RelOriginal = Relationship{Name: "original", Description: "The input flowfiles, after their content was used to make new flowfiles."}
)

// AttrErrorMessage is set on flowfiles routed to failure.
const AttrErrorMessage = "error.message"

// Processor is one step of a flow. The engine calls OnTrigger repeatedly,
// each time with a fresh ProcessSession; with schedule.concurrency > 1 it is
// called from several goroutines at once, so a Processor keeps no
// per-trigger state in its fields without locking.
//
// OnTrigger gets flowfiles from the session (processors with input), creates
// or changes flowfiles and transfers every one of them to a relationship or
// removes it. When OnTrigger returns nil the engine commits the session (if the
// processor has not already done so); when it returns an error the engine
// rolls the session back, penalizes the input flowfiles and yields the
// processor. ctx is cancelled when the flow stops; a processor blocked on I/O
// returns promptly then.
type Processor interface {
	OnTrigger(ctx context.Context, pc ProcessContext, s ProcessSession) error
}

// Starter is implemented by processors that need I/O (connections, files,
// devices, goroutines) before they run. Start is called once, before the first
// OnTrigger; if it fails the flow does not start.
type Starter interface {
	Start(ctx context.Context, pc ProcessContext) error
}

// Stopper is implemented by processors that hold resources. Stop is called
// once, after the last OnTrigger has returned (also when Start failed part
// way); every goroutine the processor started has exited when it returns.
type Stopper interface {
	Stop(ctx context.Context) error
}

// ProcessContext is the processor's view of its place in the running flow.
// It is safe for concurrent use.
type ProcessContext interface {
	// Name is the processor's name in the flow.
	Name() string
	// AgentID is agent.id from the flow.
	AgentID() string
	// Logger logs with the processor's name and type attached.
	Logger() *slog.Logger
	// Yield asks the engine not to trigger the processor again for its yield
	// duration (schedule.yield). Use it when there is no work (nothing to poll)
	// or a remote system is unavailable.
	Yield()
	// IsConnected reports whether rel is connected to at least one queue
	// (false when it is auto-terminated).
	IsConnected(rel Relationship) bool
	// HasBackpressure reports whether any outgoing connection is at its
	// threshold. Live sources use it to skip data instead of queueing it.
	HasBackpressure() bool
}

// ProcessSession is a unit of work. Nothing a session does is visible to
// anyone until Commit, which applies every effect (input flowfiles removed from
// their queues, outputs appended downstream, content stored, provenance
// events) in one durable transaction. Rollback, an error from OnTrigger, or a
// crash leaves the inputs where they were.
//
// A session is used by one goroutine. Every flowfile it got or created must be
// transferred, removed or returned before Commit, or Commit fails with
// ErrFlowFileNotHandled. The *FlowFile values passed in must be the latest
// ones the session returned for that flowfile.
type ProcessSession interface {
	// Get takes the next flowfile from the input connections (round robin),
	// or returns nil when none is available.
	Get() *FlowFile
	// GetBatch takes up to max flowfiles.
	GetBatch(max int) []*FlowFile

	// Create makes a new flowfile with no parent (a CREATE event unless a
	// RECEIVE or FETCH is reported for it).
	Create() *FlowFile
	// CreateChild makes a new flowfile derived from parents: a FORK event
	// for one parent, a JOIN event for several. Attributes are copied from
	// the only parent, or the ones all parents share.
	CreateChild(parents ...*FlowFile) *FlowFile
	// Clone makes a copy with a new ID that shares the content (CLONE event).
	Clone(ff *FlowFile) *FlowFile

	// PutAttribute sets one attribute.
	PutAttribute(ff *FlowFile, key, value string) *FlowFile
	// PutAttributes sets several attributes.
	PutAttributes(ff *FlowFile, attrs map[string]string) *FlowFile
	// RemoveAttribute deletes one attribute.
	RemoveAttribute(ff *FlowFile, key string) *FlowFile

	// Write replaces the content. The session keeps b until it commits or
	// rolls back: do not modify b before then (after that b is the caller's
	// again; the repository has its own copy).
	Write(ff *FlowFile, b []byte) *FlowFile
	// WriteFrom replaces the content with everything read from r.
	WriteFrom(ff *FlowFile, r io.Reader) (*FlowFile, error)
	// Read opens the content for reading; close the reader when done.
	Read(ff *FlowFile) (io.ReadCloser, error)
	// ReadAll returns the whole content.
	ReadAll(ff *FlowFile) ([]byte, error)

	// Transfer sends ff to rel when the session commits.
	Transfer(ff *FlowFile, rel Relationship)
	// Remove drops ff when the session commits (DROP event).
	Remove(ff *FlowFile)
	// Return puts an input flowfile back on the queue it came from when the
	// session commits (penalized if Penalize was called on it).
	Return(ff *FlowFile)
	// Penalize marks ff so that the next processor leaves it alone for the
	// penalty duration (schedule.penalty) after it is queued.
	Penalize(ff *FlowFile) *FlowFile

	// Provenance reports events that the session cannot infer.
	Provenance() ProvenanceReporter

	// OnCommitted registers fn to run after the session's transaction is
	// durable (for example to acknowledge a message to a broker). Callbacks
	// run in registration order on the committing goroutine.
	OnCommitted(fn func())
	// OnRolledBack registers fn to run if the session is rolled back.
	OnRolledBack(fn func())

	// Commit applies the session durably and then runs OnCommitted callbacks.
	// The session can be used again after Commit returns nil.
	Commit(ctx context.Context) error
	// Rollback discards everything the session did since it was created or
	// last committed and runs OnRolledBack callbacks.
	Rollback()
}

// ProvenanceReporter records events the session cannot infer on its own.
// CREATE, FORK, JOIN, CLONE, CONTENT_MODIFIED, ATTRIBUTES_MODIFIED, DROP and
// EXPIRE events are generated by the session and the engine.
type ProvenanceReporter interface {
	// Receive records data received from outside (ff was created from it).
	Receive(ff *FlowFile, transitURI, details string)
	// Fetch records content fetched from outside into an existing flowfile.
	Fetch(ff *FlowFile, transitURI, details string)
	// Send records ff's data delivered to an outside system.
	Send(ff *FlowFile, transitURI, details string)
	// Route records a routing decision with its reason.
	Route(ff *FlowFile, rel Relationship, details string)
	// ModifyContent records a content change with details (for example the
	// model that produced it), instead of the plain inferred event.
	ModifyContent(ff *FlowFile, details string)
	// ModifyAttributes records an attribute change with details.
	ModifyAttributes(ff *FlowFile, details string)
}

// Metric is one operational figure of a processor (connection state, frames
// skipped, ...), exported as edgeagent_processor_<Name> on /metrics with the
// processor's name and type as labels.
type Metric struct {
	Name    string  `json:"name"`  // snake_case; counters end in _total
	Help    string  `json:"-"`     // one sentence for the metrics page
	Value   float64 `json:"value"` // the current value
	Counter bool    `json:"-"`     // a monotonic counter rather than a gauge
}

// MetricsReporter is implemented by processors with figures of their own.
// ProcessorMetrics is called from any goroutine, at any time between Start
// and Stop, and returns the same names each time.
type MetricsReporter interface {
	ProcessorMetrics() []Metric
}

// InfoReporter is implemented by processors with descriptive facts for the
// status API and heartbeats (for example the model sha256 and the execution
// provider of an inference processor). ProcessorInfo is called from any
// goroutine between Start and Stop.
type InfoReporter interface {
	ProcessorInfo() map[string]string
}
