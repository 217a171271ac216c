// Package config reads and validates the YAML flow file: the agent settings,
// the processors with their schedules and properties, and the connections
// between them.
//
// Parse walks the YAML node tree (gopkg.in/yaml.v3) against the processor
// specs of an edgeagent.Registry and collects every problem it finds, each
// with the file, line and column of the node at fault and its path in the
// document (processors[1].properties.topic). It returns them together as an
// edgeagent.ConfigErrors, sorted in document order, so one run of
// `edgeagent validate` shows everything that is wrong.
//
// A Flow that Parse returns is valid: every processor type is known and built
// in, every property fits its spec, every connection names existing
// processors and relationships, and every relationship is connected or
// auto-terminated. Defaults are filled in, so the engine reads the values as
// they are. ProcessorConfig turns a Processor into the edgeagent.ProcessorConfig
// its spec's New receives.
//
// Keys are matched case-sensitively and unknown keys are errors, except
// top-level keys that start with "x-", which are ignored: they hold YAML
// anchors for the sections below to share (with aliases and << merge keys).
// Scalars of any YAML type become property strings as written; YAML
// booleans become "true" and "false". A property with no value (`topic:`)
// counts as not set.
//
// The package depends on the root contracts and yaml only; it never imports
// the engine, the repository or the processors.
package config
