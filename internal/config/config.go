package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"edgeagent.dev"
)

// Defaults applied to what the flow file leaves out.
const (
	DefaultDataDir          = "./data" // when $STATE_DIRECTORY is not set either
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "text"
	DefaultShutdownTimeout  = 10 * time.Second
	DefaultRepositorySize   = 1 << 30  // repository.max_size
	DefaultMaxContentSize   = 64 << 20 // repository.max_content_size
	DefaultProvenanceAge    = 24 * time.Hour
	DefaultProvenanceSize   = 100 << 20
	DefaultConcurrency      = 1
	DefaultBatch            = 1
	DefaultYield            = time.Second
	DefaultPenalty          = 30 * time.Second
	DefaultMaxCount         = 10000
	DefaultMaxBytes         = 1 << 30
	DefaultPrioritizer      = "fifo"
	DefaultWhenFull         = "backpressure"
	stateDirectoryVariable  = "STATE_DIRECTORY" // set by systemd's StateDirectory=
	processorStateDirectory = "state"
)

// Allowed values of the enum settings.
var (
	LogLevels    = []string{"debug", "info", "warn", "error"}
	LogFormats   = []string{"text", "json"}
	Prioritizers = []string{"fifo", "oldest_first", "newest_first", "priority_attribute"}
	WhenFull     = []string{"backpressure", "drop_oldest"}
	// RetireActions are what retired_connections can do with a queue.
	RetireActions = []string{RetireDrain, RetireDrop, RetireKeep}
)

// The actions of retired_connections.
const (
	// RetireDrain: the processor named by to takes the queue's flowfiles
	// until it is empty, as if the connection still led to it.
	RetireDrain = "drain"
	// RetireDrop: the flowfiles are dropped when the flow starts, each
	// with a DROP provenance event (NiFi's "Empty queue").
	RetireDrop = "drop"
	// RetireKeep: the flowfiles stay on disk, unused, until a flow names
	// the connection again.
	RetireKeep = "keep"
)

// Flow is a parsed and validated flow file with its defaults applied.
type Flow struct {
	File        string // the path it was read from
	Hash        string // sha256 of the file's bytes, hex
	Agent       Agent
	Processors  []*Processor // in file order
	Connections []*Connection
	// Retired lists the connections that left the flow, with what happens
	// to the flowfiles still in their queues (retired_connections).
	Retired []*RetiredConnection
}

// Agent holds the agent section.
type Agent struct {
	ID              string // default: the host name
	DataDir         string // default: $STATE_DIRECTORY, else ./data
	HTTP            string // host:port of the status server; "" disables it
	LogLevel        string // debug, info, warn or error
	LogFormat       string // text or json
	ShutdownTimeout time.Duration
	Repository      Repository
	Provenance      Provenance
	// MQTTBroker is the embedded MQTT broker, nil when not configured.
	MQTTBroker *MQTTBroker
	// WatchConfig reloads the flow when its file changes, as SIGHUP does.
	WatchConfig bool
	// C2 is command and control (agent.c2), nil when not configured.
	C2        *C2
	Line, Col int // position of the agent section; 0 when absent
}

// DefaultBrokerListen is the embedded broker's default address: loopback only.
const DefaultBrokerListen = "127.0.0.1:1883"

// MQTTBroker holds agent.mqtt_broker: an in-process MQTT broker for on-site
// devices (and the demo).
type MQTTBroker struct {
	Listen         string // host:port; default 127.0.0.1:1883
	CertFile       string // TLS certificate (PEM); with KeyFile makes the listener TLS-only
	KeyFile        string
	ClientCAFile   string // mutual TLS: CAs of client certificates
	PasswordFile   string // users in mosquitto_passwd format
	AllowAnonymous bool   // required to listen beyond loopback without authentication
}

// C2 defaults.
const (
	DefaultC2HeartbeatPeriod = 30 * time.Second
	DefaultC2UpdateTimeout   = 30 * time.Second
	DefaultC2AgentClass      = "default"
)

// C2Protocols are the channels agent.c2.protocol can name.
var C2Protocols = []string{"http", "mqtt"}

// C2Operations are the operations agent.c2.allow can name.
var C2Operations = []string{"update_configuration", "update_asset", "describe", "clear_connection",
	"start", "stop", "restart", "transfer_debug"}

// C2 holds agent.c2: heartbeats to, and operations from, a command and
// control server (MiNiFi C2 protocol over HTTP) or an MQTT broker.
type C2 struct {
	// Protocol is "http" or "mqtt": the one channel heartbeats go out on
	// and operations are taken from.
	Protocol string
	// URL is the C2 server's heartbeat endpoint (http), e.g.
	// https://c2.example/c2/api/heartbeat.
	URL string
	// AckURL is the acknowledge endpoint (http); default: URL with its
	// last path element replaced by "acknowledge".
	AckURL string
	// Broker is the MQTT broker URL (mqtt).
	Broker          string
	AgentClass      string
	HeartbeatPeriod time.Duration
	// UpdateTimeout bounds how long a new flow has to reach a running
	// state before it is rolled back.
	UpdateTimeout time.Duration
	// Allow lists the accepted operations (C2Operations); default: all.
	Allow []string
	// AssetsDir receives assets (update asset); default DATA_DIR/assets.
	AssetsDir string
	// TLS: CA bundle, client certificate and key (mutual TLS).
	CAFile, CertFile, KeyFile string
	// Username and PasswordFile authenticate to the broker (mqtt) or
	// the server (http, basic auth).
	Username, PasswordFile string
}

// Allows reports whether operation (one of C2Operations) is accepted.
func (c *C2) Allows(operation string) bool {
	for _, a := range c.Allow {
		if a == operation {
			return true
		}
	}
	return false
}

// Repository holds agent.repository: the disk budget.
type Repository struct {
	MaxSize        int64 // bytes the repository may use on disk
	MaxContentSize int64 // the largest content of one flowfile
}

// Provenance holds agent.provenance: event retention.
type Provenance struct {
	MaxAge  time.Duration
	MaxSize int64
}

// Schedule is how the engine triggers a processor.
type Schedule struct {
	Period      time.Duration // between triggers; 0: as soon as there is work
	Yield       time.Duration // pause after the processor yields
	Penalty     time.Duration // how long a penalized flowfile waits
	Concurrency int           // goroutines triggering it at once, >= 1
	Batch       int           // OnTrigger runs committed together in one session (NiFi's run duration), 1..1000
}

// Processor is one entry of processors.
type Processor struct {
	Name string
	Type string
	Spec *edgeagent.ProcessorSpec // never nil in a Flow that Parse returned
	// Schedule has the spec's and the agent's defaults applied.
	Schedule Schedule
	// Properties holds the properties set in the file (spec and dynamic
	// ones), as written; YAML booleans are "true" or "false". Defaults are
	// not in it: ProcessorConfig applies them.
	Properties map[string]string
	// Dynamic lists the dynamic property names in file order.
	Dynamic []string
	// AutoTerminate lists the auto-terminated relationships.
	AutoTerminate []string
	Line, Col     int
}

// Relationships returns the processor's relationships: the spec's fixed
// ones, then one per dynamic property when the spec makes dynamic properties
// relationships (RouteOnAttribute).
func (p *Processor) Relationships() []edgeagent.Relationship {
	rels := append([]edgeagent.Relationship(nil), p.Spec.Relationships...)
	if p.Spec.Dynamic != nil && p.Spec.Dynamic.Relationships {
		for _, name := range p.Dynamic {
			if _, fixed := p.Spec.Relationship(name); fixed {
				continue // refused by validation
			}
			rels = append(rels, edgeagent.Relationship{
				Name:        name,
				Description: fmt.Sprintf("Flowfiles routed by the dynamic property %q.", name),
			})
		}
	}
	return rels
}

// Connection is one entry of connections: a durable queue from some
// relationships of one processor to another processor.
type Connection struct {
	// Name defaults to FROM/REL[+REL...]/TO.
	Name          string
	From, To      string
	Relationships []string
	MaxCount      int64         // backpressure threshold in flowfiles
	MaxBytes      int64         // backpressure threshold in content bytes
	ExpireAfter   time.Duration // 0: never expire
	Prioritizer   string        // fifo, oldest_first, newest_first or priority_attribute
	WhenFull      string        // backpressure or drop_oldest
	Line, Col     int
}

// RetiredConnection is one entry of retired_connections: a connection that
// was removed from the flow while its queue may still hold flowfiles, and
// what happens to them. A reload that removes a connection whose queue is
// not empty is refused unless the new flow lists it here (NiFi likewise
// refuses to delete a connection with queued data).
type RetiredConnection struct {
	// Name is the connection's name: its name: or FROM/REL[+REL...]/TO.
	Name string
	// Action is RetireDrain, RetireDrop or RetireKeep.
	Action string
	// To is the processor that drains the queue (RetireDrain only).
	To        string
	Line, Col int
}

// RetiredConnection returns the retired connection with that name, or nil.
func (f *Flow) RetiredConnection(name string) *RetiredConnection {
	for _, r := range f.Retired {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Load reads and parses the flow file at path. Problems with the flow are
// returned as edgeagent.ConfigErrors; a file that cannot be read gives a
// plain error.
func Load(path string, reg *edgeagent.Registry) (*Flow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading flow file: %w", err)
	}
	return Parse(path, data, reg)
}

// Parse parses and validates a flow file's bytes against the processor specs
// in reg. file names the file in error messages. Every problem is reported,
// as an edgeagent.ConfigErrors in document order; the Flow is returned only
// when there is none. The defaults of agent.id and agent.data_dir come from
// the host name and $STATE_DIRECTORY.
func Parse(file string, data []byte, reg *edgeagent.Registry) (*Flow, error) {
	if reg == nil {
		reg = edgeagent.NewRegistry()
	}
	p := &parser{file: file, reg: reg}
	f := p.parse(data)
	if len(p.errs) > 0 {
		p.sortErrors()
		return nil, p.errs
	}
	sum := sha256.Sum256(data)
	f.File, f.Hash = file, hex.EncodeToString(sum[:])
	return f, nil
}

// Processor returns the processor with that name, or nil.
func (f *Flow) Processor(name string) *Processor {
	for _, p := range f.Processors {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// ProcessorConfig builds what p's spec New receives: every spec property
// (defaults applied) and the dynamic properties, compiled for expressions
// and bound to env; the agent ID; StateDir, which is DATA_DIR/state/NAME;
// and logger (slog.Default() when nil) with the processor's name and type
// attached.
func (f *Flow) ProcessorConfig(p *Processor, env edgeagent.ExprEnv, logger *slog.Logger) (*edgeagent.ProcessorConfig, error) {
	if logger == nil {
		logger = slog.Default()
	}
	cfg := &edgeagent.ProcessorConfig{
		Name:       p.Name,
		Type:       p.Type,
		AgentID:    f.Agent.ID,
		StateDir:   filepath.Join(f.Agent.DataDir, processorStateDirectory, p.Name),
		Properties: make(map[string]edgeagent.PropertyValue, len(p.Spec.Properties)),
		Logger:     logger.With("processor", p.Name, "type", p.Type),
	}
	for _, ps := range p.Spec.Properties {
		raw, set := p.Properties[ps.Name]
		if !set {
			raw = ps.Default
		}
		v, err := edgeagent.NewPropertyValue(raw, set, ps.Expressions, env)
		if err != nil {
			return nil, fmt.Errorf("configuring processor %s: property %s: %w", p.Name, ps.Name, err)
		}
		cfg.Properties[ps.Name] = v
	}
	for _, name := range p.Dynamic {
		v, err := edgeagent.NewPropertyValue(p.Properties[name], true, p.Spec.Dynamic.Expressions, env)
		if err != nil {
			return nil, fmt.Errorf("configuring processor %s: property %s: %w", p.Name, name, err)
		}
		cfg.Dynamic = append(cfg.Dynamic, edgeagent.DynamicProperty{Name: name, Value: v})
	}
	return cfg, nil
}
