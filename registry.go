package edgeagent

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// InputRequirement says whether a processor type takes input connections.
type InputRequirement int

// Input requirements.
const (
	InputAllowed   InputRequirement = iota // may have input connections
	InputRequired                          // must have at least one input connection
	InputForbidden                         // a source: no input connections
)

// DynamicSpec describes the user-named properties a processor accepts.
type DynamicSpec struct {
	// Description says what a dynamic property means (its name and value).
	Description string
	// Expressions marks dynamic values that may contain ${...} expressions.
	Expressions bool
	// Relationships makes each dynamic property name a relationship
	// (RouteOnAttribute).
	Relationships bool
}

// ProcessorSpec describes a processor type: its documentation, its
// properties and relationships, and its constructor.
type ProcessorSpec struct {
	Type        string // NiFi-style name: GetFile, PublishMQTT ...
	Summary     string // one line
	Description string
	Input       InputRequirement
	Properties  []PropertySpec
	// Relationships are the fixed relationships.
	Relationships []Relationship
	// Dynamic is nil when the processor takes no user-named properties.
	Dynamic *DynamicSpec
	// DefaultPeriod is the schedule.period used when the flow sets none
	// (0: trigger as soon as there is input, or continuously for sources).
	DefaultPeriod time.Duration
	// BuildTag names the build tag a binary needs for this processor; with
	// New nil the type is known but not compiled in.
	BuildTag string
	// New checks cfg and returns a processor. It does no I/O and starts no
	// goroutines (those belong in Starter.Start).
	New func(cfg *ProcessorConfig) (Processor, error)
}

// Property returns the spec of the named property.
func (s *ProcessorSpec) Property(name string) (*PropertySpec, bool) {
	for i := range s.Properties {
		if s.Properties[i].Name == name {
			return &s.Properties[i], true
		}
	}
	return nil, false
}

// Relationship returns the fixed relationship of that name.
func (s *ProcessorSpec) Relationship(name string) (Relationship, bool) {
	for _, r := range s.Relationships {
		if r.Name == name {
			return r, true
		}
	}
	return Relationship{}, false
}

// Available reports whether the type is compiled into this binary.
func (s *ProcessorSpec) Available() bool { return s.New != nil }

// Registry maps processor type names to specs. It is filled once at start
// (processors/all) and read-only afterwards.
type Registry struct {
	specs map[string]*ProcessorSpec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]*ProcessorSpec{}} }

// Register adds a spec. It fails on an empty or duplicate type name.
func (r *Registry) Register(spec ProcessorSpec) error {
	if spec.Type == "" {
		return fmt.Errorf("registering processor: %w: empty type name", ErrInvalidSpec)
	}
	if _, dup := r.specs[spec.Type]; dup {
		return fmt.Errorf("registering processor %s: %w: duplicate type name", spec.Type, ErrInvalidSpec)
	}
	if spec.New == nil && spec.BuildTag == "" {
		return fmt.Errorf("registering processor %s: %w: no constructor and no build tag", spec.Type, ErrInvalidSpec)
	}
	s := spec
	r.specs[spec.Type] = &s
	return nil
}

// MustRegister is Register that panics; for wiring lists in processors/all.
func (r *Registry) MustRegister(specs ...ProcessorSpec) {
	for _, s := range specs {
		if err := r.Register(s); err != nil {
			panic(err)
		}
	}
}

// Lookup returns the spec of a type.
func (r *Registry) Lookup(typ string) (*ProcessorSpec, bool) {
	s, ok := r.specs[typ]
	return s, ok
}

// Specs returns every spec, sorted by type name.
func (r *Registry) Specs() []*ProcessorSpec {
	out := make([]*ProcessorSpec, 0, len(r.specs))
	for _, s := range r.specs {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *ProcessorSpec) int { return strings.Compare(a.Type, b.Type) })
	return out
}

// MissingBuildTags returns the build tags of types not compiled in, sorted.
func (r *Registry) MissingBuildTags() []string {
	var tags []string
	for _, s := range r.specs {
		if !s.Available() && !slices.Contains(tags, s.BuildTag) {
			tags = append(tags, s.BuildTag)
		}
	}
	slices.Sort(tags)
	return tags
}
