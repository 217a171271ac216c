package edgeagent

import (
	"maps"
	"slices"
	"time"
)

// Standard attribute names.
const (
	AttrUUID        = "uuid"          // the flowfile ID; always present, never stored in Attributes
	AttrFilename    = "filename"      // a name for the content, used by PutFile
	AttrPath        = "path"          // a relative directory, set by GetFile
	AttrAbsPath     = "absolute.path" // the source directory, set by GetFile
	AttrMimeType    = "mime.type"     // the content's media type
	AttrAgentID     = "agent.id"      // the agent that created the flowfile
	AttrCaptureTime = "capture.time"  // event time of sensor and camera data, RFC 3339
	AttrPriority    = "priority"      // read by the priority_attribute prioritizer
)

// FlowFile is one record moving through the flow: attributes, a reference to
// its content, and its lineage. A FlowFile is immutable: the ProcessSession
// methods that change one return a new value, and callers never modify the
// fields or the Attributes map of a FlowFile they were given.
type FlowFile struct {
	// ID identifies this flowfile; it is stable across restarts and travels
	// with the data so receivers can drop duplicates.
	ID ID
	// Attributes are the key/value metadata (the uuid attribute is ID and is
	// not stored here).
	Attributes map[string]string
	// Claim identifies the content in the content store; 0 means no content.
	// Clones share a claim.
	Claim uint64
	// Size is the content length in bytes.
	Size int64
	// EntryTime is when this flowfile entered the agent.
	EntryTime time.Time
	// LineageStart is the entry time of the oldest ancestor.
	LineageStart time.Time
	// Parents are the IDs of the flowfiles this one was forked, cloned or
	// joined from.
	Parents []ID
}

// Attr returns the attribute value for key, or "" when it is not set. The
// key "uuid" returns the flowfile ID.
func (f *FlowFile) Attr(key string) string {
	if key == AttrUUID {
		return f.ID.String()
	}
	return f.Attributes[key]
}

// Lookup returns the attribute value for key and whether it is set.
func (f *FlowFile) Lookup(key string) (string, bool) {
	if key == AttrUUID {
		return f.ID.String(), true
	}
	v, ok := f.Attributes[key]
	return v, ok
}

// AllAttributes returns a new map with every attribute, uuid included.
func (f *FlowFile) AllAttributes() map[string]string {
	m := make(map[string]string, len(f.Attributes)+1)
	maps.Copy(m, f.Attributes)
	m[AttrUUID] = f.ID.String()
	return m
}

// Copy returns a shallow copy whose Attributes map and Parents slice may be
// changed without affecting f. Sessions use it to derive new values.
func (f *FlowFile) Copy() *FlowFile {
	c := *f
	c.Attributes = maps.Clone(f.Attributes)
	if c.Attributes == nil {
		c.Attributes = map[string]string{}
	}
	c.Parents = slices.Clone(f.Parents)
	return &c
}
