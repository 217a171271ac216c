package provenance

import (
	"slices"
	"time"

	"edgeagent.dev"
)

// EventType is the kind of a provenance event. The values and their meaning
// follow Apache NiFi.
type EventType string

// Event types.
const (
	// EventCreate is recorded when a processor makes a new flowfile from
	// nothing upstream in the flow (a generator, a sensor read, a camera frame).
	EventCreate EventType = "CREATE"
	// EventReceive is recorded when data arrives from outside the agent (a file
	// picked up, an MQTT message); TransitURI says from where.
	EventReceive EventType = "RECEIVE"
	// EventFetch is recorded when a flowfile's content is replaced by data
	// fetched from outside the agent; TransitURI says from where.
	EventFetch EventType = "FETCH"
	// EventSend is recorded when data leaves the agent and the receiver
	// acknowledged it; TransitURI says where to.
	EventSend EventType = "SEND"
	// EventDrop is recorded when a flowfile ends its life in the flow, for
	// example on an auto-terminated relationship.
	EventDrop EventType = "DROP"
	// EventExpire is recorded when a connection drops a flowfile that waited
	// longer than its expire_after.
	EventExpire EventType = "EXPIRE"
	// EventFork is recorded on a parent flowfile that was split into children;
	// Children lists them.
	EventFork EventType = "FORK"
	// EventJoin is recorded on a flowfile made by merging others; Parents
	// lists the inputs.
	EventJoin EventType = "JOIN"
	// EventClone is recorded on a flowfile that was cloned; Children holds the
	// clone.
	EventClone EventType = "CLONE"
	// EventContentModified is recorded when a flowfile's content was replaced.
	EventContentModified EventType = "CONTENT_MODIFIED"
	// EventAttributesModified is recorded when a flowfile's attributes changed.
	EventAttributesModified EventType = "ATTRIBUTES_MODIFIED"
	// EventRoute is recorded when a processor routed a flowfile to a
	// relationship and the routing itself is of interest.
	EventRoute EventType = "ROUTE"
)

// eventTypes lists every EventType; its index + 1 is the type's code in the
// binary encoding, so the order must never change (append only).
var eventTypes = [...]EventType{
	EventCreate, EventReceive, EventFetch, EventSend, EventDrop, EventExpire,
	EventFork, EventJoin, EventClone, EventContentModified,
	EventAttributesModified, EventRoute,
}

// EventTypes returns every event type, in a stable order.
func EventTypes() []EventType { return slices.Clone(eventTypes[:]) }

// Valid reports whether t is one of the defined event types.
func (t EventType) Valid() bool { return t.code() != 0 }

// code returns t's code in the binary encoding, or 0 when t is not valid.
func (t EventType) code() byte {
	switch t {
	case EventCreate:
		return 1
	case EventReceive:
		return 2
	case EventFetch:
		return 3
	case EventSend:
		return 4
	case EventDrop:
		return 5
	case EventExpire:
		return 6
	case EventFork:
		return 7
	case EventJoin:
		return 8
	case EventClone:
		return 9
	case EventContentModified:
		return 10
	case EventAttributesModified:
		return 11
	case EventRoute:
		return 12
	}
	return 0
}

// typeOfCode returns the EventType with code c, or "" when there is none.
func typeOfCode(c byte) EventType {
	if c == 0 || int(c) > len(eventTypes) {
		return ""
	}
	return eventTypes[c-1]
}

// Event is one provenance event: something that happened to one flowfile in
// one component at one time.
type Event struct {
	// ID identifies the event; Append assigns it. IDs increase in the order
	// events were appended, and are never reused.
	ID uint64 `json:"id"`
	// Type says what happened.
	Type EventType `json:"type"`
	// Time is when it happened.
	Time time.Time `json:"time"`
	// FlowFileID is the flowfile the event is about.
	FlowFileID edgeagent.ID `json:"flowfile_id"`
	// Parents are the inputs of a JOIN (and the parents a forked or cloned
	// flowfile came from, where a component records them).
	Parents []edgeagent.ID `json:"parents,omitempty"`
	// Children are the outputs of a FORK or the clone of a CLONE.
	Children []edgeagent.ID `json:"children,omitempty"`
	// Component is the name of the processor or connection that caused the
	// event.
	Component string `json:"component"`
	// ComponentType is the processor type (GetFile, PublishMQTT, ...) or
	// "Connection".
	ComponentType string `json:"component_type"`
	// Relationship is the relationship the flowfile was routed to, if any.
	Relationship string `json:"relationship,omitempty"`
	// TransitURI is where data came from (RECEIVE, FETCH) or went to (SEND).
	TransitURI string `json:"transit_uri,omitempty"`
	// Updated holds the attributes this event set: every attribute for CREATE
	// and RECEIVE, the changed ones otherwise.
	Updated map[string]string `json:"updated_attributes,omitempty"`
	// Removed names the attributes this event removed.
	Removed []string `json:"removed_attributes,omitempty"`
	// ContentSize is the flowfile's content size in bytes after the event.
	ContentSize int64 `json:"content_size"`
	// LineageStart is the entry time of the flowfile's oldest ancestor.
	LineageStart time.Time `json:"lineage_start"`
	// Details is free text, for example the sha256 of the model that made an
	// inference result.
	Details string `json:"details,omitempty"`
}

// Involves reports whether the event concerns flowfile id: as its FlowFileID,
// one of its Parents or one of its Children.
func (e *Event) Involves(id edgeagent.ID) bool {
	return e.FlowFileID == id || slices.Contains(e.Parents, id) || slices.Contains(e.Children, id)
}

// involved appends to dst every distinct flowfile the event involves: its
// FlowFileID first, then its Parents and Children in order, without repeats.
func involved(dst []edgeagent.ID, ff edgeagent.ID, parents, children []edgeagent.ID) []edgeagent.ID {
	dst = append(dst, ff)
	start := len(dst) - 1
	n := len(parents) + len(children)
	if n == 0 {
		return dst
	}
	if n > 32 { // big joins or forks: avoid quadratic de-duplication
		seen := make(map[edgeagent.ID]struct{}, n+1)
		seen[ff] = struct{}{}
		for _, list := range [2][]edgeagent.ID{parents, children} {
			for _, id := range list {
				if _, ok := seen[id]; !ok {
					seen[id] = struct{}{}
					dst = append(dst, id)
				}
			}
		}
		return dst
	}
	for _, list := range [2][]edgeagent.ID{parents, children} {
		for _, id := range list {
			if !slices.Contains(dst[start:], id) {
				dst = append(dst, id)
			}
		}
	}
	return dst
}
