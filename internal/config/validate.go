package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"edgeagent.dev"
)

// The keys allowed in each section, in the order the messages list them.
var (
	topKeys        = []string{"agent", "processors", "connections", "retired_connections"}
	agentKeys      = []string{"id", "data_dir", "http", "log", "shutdown_timeout", "repository", "provenance", "mqtt_broker", "watch_config", "c2"}
	brokerKeys     = []string{"listen", "tls_cert_file", "tls_key_file", "tls_client_ca_file", "password_file", "allow_anonymous"}
	logKeys        = []string{"level", "format"}
	repositoryKeys = []string{"max_size", "max_content_size"}
	provenanceKeys = []string{"max_age", "max_size"}
	processorKeys  = []string{"name", "type", "schedule", "properties", "auto_terminate"}
	scheduleKeys   = []string{"period", "concurrency", "yield", "penalty", "batch"}
	connectionKeys = []string{"name", "from", "relationship", "relationships", "to",
		"max_count", "max_bytes", "expire_after", "prioritizer", "when_full"}
	retiredKeys = []string{"name", "action", "to"}
)

// parser walks the YAML node tree of one flow file and collects problems.
type parser struct {
	file    string
	reg     *edgeagent.Registry
	errs    edgeagent.ConfigErrors
	root    *yaml.Node      // the top mapping, for errors with no better place
	procs   []*procNodes    // per processor, in file order
	conns   []*connNodes    // per connection, in file order
	retired []*retiredNodes // per retired connection, in file order
	// connsBroken is set when the connections section is not a list: the
	// checks that need every connection are skipped then.
	connsBroken bool
	// merges counts the mappings merged with <<, which can nest: a file
	// may not make the walk expand more than maxMerges of them.
	merges int
}

// maxMerges bounds <<-merge expansion (nested merges grow exponentially).
const maxMerges = 10000

// procNodes keeps the nodes of a processor for the checks across sections.
type procNodes struct {
	p        *Processor
	path     string
	node     *yaml.Node
	autoTerm []listItem            // the auto_terminate items
	autoBad  bool                  // auto_terminate is not a list of names
	dynKeys  map[string]*yaml.Node // dynamic property name -> key node
	incoming int
	// suspect is set when a broken connection probably meant this
	// processor; "not connected" checks are skipped then, since they would
	// only repeat that problem.
	suspect bool
}

type connNodes struct {
	c        *Connection
	path     string
	from, to *yaml.Node
	rels     []listItem
	// complete is set when from, to and the relationships are all given.
	complete bool
}

type retiredNodes struct {
	r        *RetiredConnection
	path     string
	name, to *yaml.Node
}

// errorf records a problem at node n (nil: the top of the file).
func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &edgeagent.ConfigError{File: p.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n == nil {
		n = p.root
	}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	if e.Line < 1 { // every node the walk reaches has a position; be safe anyway
		e.Line, e.Col = 1, 1
	}
	p.errs = append(p.errs, e)
}

// sortErrors puts the problems in document order.
func (p *parser) sortErrors() {
	slices.SortStableFunc(p.errs, func(a, b *edgeagent.ConfigError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
}

// yamlLine matches the line number in yaml.v3's syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode parses data into the top node, reporting syntax errors.
func (p *parser) decode(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		p.syntaxError(data, err)
		return nil
	}
	if err != nil || len(doc.Content) == 0 || resolve(doc.Content[0]).ShortTag() == "!!null" {
		p.errs = append(p.errs, &edgeagent.ConfigError{File: p.file, Line: 1, Col: 1,
			Msg: "the flow file is empty: it needs at least a processors section"})
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.errorf(&next, "", "the flow file holds more than one YAML document; use one")
	case !errors.Is(err, io.EOF):
		p.syntaxError(data, err)
	}
	return doc.Content[0]
}

func (p *parser) syntaxError(data []byte, err error) {
	line, msg := splitYAMLError(err)
	if l := problemLine(data, msg); l > 0 {
		line = l
	}
	p.errs = append(p.errs, &edgeagent.ConfigError{File: p.file, Line: line, Msg: "invalid YAML: " + msg})
}

// splitYAMLError splits "yaml: line 3: problem" into 3 and "problem"; the
// line is 0 when the message has none.
func splitYAMLError(err error) (int, string) {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(err.Error(), "yaml: ")
}

// problemLine finds the line of a YAML syntax error. yaml.v3 names the line
// where the enclosing block starts (for parser errors counted from 0), so a
// problem on line 40 of a list that starts on line 2 reads "line 1". The
// problem is on the first line at which the file, cut after that line, fails
// with the same message; a binary search finds it (a cut after the problem
// fails as the whole file does). It returns 0 when there is no such line.
func problemLine(data []byte, msg string) int {
	var ends []int // ends[i]: the offset after line i+1
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	fails := func(k int) bool { // does the file cut after line k fail with msg?
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[k-1]]))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if err == nil {
				continue
			}
			_, m := splitYAMLError(err)
			return m == msg && !errors.Is(err, io.EOF)
		}
	}
	lo, hi := 1, len(ends)
	for lo < hi {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if !fails(lo) {
		return 0
	}
	return lo
}

// parse walks the whole document.
func (p *parser) parse(data []byte) *Flow {
	top := p.decode(data)
	if top == nil {
		return nil
	}
	top = resolve(top)
	p.root = top
	f := &Flow{}
	m := p.mapping(top, "", topKeys)
	if m == nil {
		return nil
	}
	f.Agent = p.agent(m.get("agent"), "agent")
	if n := m.get("processors"); n != nil {
		p.processors(n, "processors")
	} else {
		p.errorf(top, "", "missing processors: a flow needs a list of processors")
	}
	if n := m.get("connections"); n != nil {
		p.connections(n, "connections")
	}
	if n := m.get("retired_connections"); n != nil {
		p.retiredConnections(n, "retired_connections")
	}
	p.checkGraph()
	for _, pn := range p.procs {
		f.Processors = append(f.Processors, pn.p)
	}
	for _, cn := range p.conns {
		f.Connections = append(f.Connections, cn.c)
	}
	for _, rn := range p.retired {
		f.Retired = append(f.Retired, rn.r)
	}
	return f
}

// ---- the agent section ----

func (p *parser) agent(n *yaml.Node, path string) Agent {
	a := Agent{
		LogLevel:        DefaultLogLevel,
		LogFormat:       DefaultLogFormat,
		ShutdownTimeout: DefaultShutdownTimeout,
		Repository:      Repository{MaxSize: DefaultRepositorySize, MaxContentSize: DefaultMaxContentSize},
		Provenance:      Provenance{MaxAge: DefaultProvenanceAge, MaxSize: DefaultProvenanceSize},
	}
	m := p.mapping(n, path, agentKeys)
	if m != nil {
		a.Line, a.Col = m.node.Line, m.node.Column
	}
	if v, ok := m.scalar(p, "id"); ok {
		a.ID = v
		p.checkAgentID(m.get("id"), path+".id", v)
	} else {
		host, err := os.Hostname()
		if err != nil || strings.TrimSpace(host) == "" {
			p.errorf(m.pos(), path, "agent.id is not set and the host name is unknown: set agent.id")
		}
		a.ID = host
	}
	a.DataDir = defaultDataDir()
	if v, ok := m.scalar(p, "data_dir"); ok {
		a.DataDir = v
		if v == "" {
			p.errorf(m.get("data_dir"), path+".data_dir", "data_dir cannot be empty")
		}
	}
	if v, ok := m.scalar(p, "http"); ok {
		a.HTTP = v
		p.checkHostPort(m.get("http"), path+".http", v)
	}
	if lm := p.mapping(m.get("log"), path+".log", logKeys); lm != nil {
		a.LogLevel = lm.enum(p, "level", LogLevels, a.LogLevel)
		a.LogFormat = lm.enum(p, "format", LogFormats, a.LogFormat)
	}
	a.ShutdownTimeout = m.duration(p, "shutdown_timeout", a.ShutdownTimeout, true)
	if rm := p.mapping(m.get("repository"), path+".repository", repositoryKeys); rm != nil {
		a.Repository.MaxSize = rm.size(p, "max_size", a.Repository.MaxSize)
		a.Repository.MaxContentSize = rm.size(p, "max_content_size", a.Repository.MaxContentSize)
		if a.Repository.MaxContentSize > a.Repository.MaxSize {
			n := rm.get("max_content_size")
			if n == nil {
				n = rm.get("max_size")
			}
			p.errorf(n, path+".repository.max_content_size", "max_content_size (%s) is larger than max_size (%s)",
				edgeagent.FormatSize(a.Repository.MaxContentSize), edgeagent.FormatSize(a.Repository.MaxSize))
		}
	}
	if pm := p.mapping(m.get("provenance"), path+".provenance", provenanceKeys); pm != nil {
		a.Provenance.MaxAge = pm.duration(p, "max_age", a.Provenance.MaxAge, true)
		a.Provenance.MaxSize = pm.size(p, "max_size", a.Provenance.MaxSize)
	}
	if bn := m.get("mqtt_broker"); bn != nil {
		a.MQTTBroker = p.mqttBroker(bn, path+".mqtt_broker")
	}
	a.WatchConfig = m.boolean(p, "watch_config", false)
	if cn := m.get("c2"); cn != nil {
		a.C2 = p.c2(cn, path+".c2", a.DataDir)
	}
	return a
}

// c2Keys are the keys of agent.c2.
var c2Keys = []string{"protocol", "url", "ack_url", "broker", "agent_class", "heartbeat_period", "update_timeout",
	"allow", "assets_dir", "tls_ca_file", "tls_cert_file", "tls_key_file", "username", "password_file"}

// c2 parses agent.c2, command and control.
func (p *parser) c2(n *yaml.Node, path, dataDir string) *C2 {
	c := &C2{AgentClass: DefaultC2AgentClass, HeartbeatPeriod: DefaultC2HeartbeatPeriod, UpdateTimeout: DefaultC2UpdateTimeout,
		Allow: append([]string(nil), C2Operations...), AssetsDir: filepath.Join(dataDir, "assets")}
	cm := p.mapping(n, path, c2Keys)
	if cm == nil {
		return c
	}
	c.Protocol = cm.enum(p, "protocol", C2Protocols, "")
	if c.Protocol == "" && cm.get("protocol") == nil {
		p.errorf(cm.pos(), path, "protocol is required (one of %s)", strings.Join(C2Protocols, ", "))
	}
	c.URL, _ = cm.scalar(p, "url")
	c.AckURL, _ = cm.scalar(p, "ack_url")
	c.Broker, _ = cm.scalar(p, "broker")
	switch c.Protocol {
	case "http":
		if c.URL == "" {
			p.errorf(cm.pos(), path, "protocol http needs url (the C2 server's heartbeat endpoint)")
		} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.errorf(cm.get("url"), path+".url", "%q is not an http:// or https:// URL", c.URL)
		}
		if c.Broker != "" {
			p.errorf(cm.get("broker"), path+".broker", "broker is for protocol mqtt")
		}
	case "mqtt":
		if c.Broker == "" {
			p.errorf(cm.pos(), path, "protocol mqtt needs broker (e.g. ssl://central:8883)")
		}
		for _, k := range []string{"url", "ack_url"} {
			if cm.get(k) != nil {
				p.errorf(cm.get(k), path+"."+k, "%s is for protocol http", k)
			}
		}
	}
	if v, ok := cm.scalar(p, "agent_class"); ok {
		c.AgentClass = v
		p.checkAgentID(cm.get("agent_class"), path+".agent_class", v)
	}
	c.HeartbeatPeriod = cm.duration(p, "heartbeat_period", c.HeartbeatPeriod, true)
	c.UpdateTimeout = cm.duration(p, "update_timeout", c.UpdateTimeout, true)
	if an := cm.get("allow"); an != nil {
		c.Allow = nil
		for _, it := range p.stringList(an, path+".allow") {
			if !slices.Contains(C2Operations, it.v) {
				p.errorf(it.n, it.path, "unknown operation %q (one of %s)", it.v, strings.Join(C2Operations, ", "))
				continue
			}
			c.Allow = append(c.Allow, it.v)
		}
	}
	if v, ok := cm.scalar(p, "assets_dir"); ok && v != "" {
		c.AssetsDir = v
	}
	c.CAFile, _ = cm.scalar(p, "tls_ca_file")
	c.CertFile, _ = cm.scalar(p, "tls_cert_file")
	c.KeyFile, _ = cm.scalar(p, "tls_key_file")
	if (c.CertFile == "") != (c.KeyFile == "") {
		p.errorf(cm.pos(), path, "tls_cert_file and tls_key_file must be set together")
	}
	c.Username, _ = cm.scalar(p, "username")
	c.PasswordFile, _ = cm.scalar(p, "password_file")
	if c.PasswordFile != "" && c.Username == "" {
		p.errorf(cm.get("password_file"), path+".password_file", "password_file needs username")
	}
	return c
}

// mqttBroker parses agent.mqtt_broker, the embedded broker.
func (p *parser) mqttBroker(n *yaml.Node, path string) *MQTTBroker {
	b := &MQTTBroker{Listen: DefaultBrokerListen}
	bm := p.mapping(n, path, brokerKeys)
	if bm == nil {
		return b
	}
	if v, ok := bm.scalar(p, "listen"); ok {
		b.Listen = v
		p.checkHostPort(bm.get("listen"), path+".listen", v)
	}
	b.CertFile, _ = bm.scalar(p, "tls_cert_file")
	b.KeyFile, _ = bm.scalar(p, "tls_key_file")
	b.ClientCAFile, _ = bm.scalar(p, "tls_client_ca_file")
	b.PasswordFile, _ = bm.scalar(p, "password_file")
	if (b.CertFile == "") != (b.KeyFile == "") {
		p.errorf(bm.pos(), path, "tls_cert_file and tls_key_file must be set together")
	}
	if b.ClientCAFile != "" && b.CertFile == "" {
		p.errorf(bm.get("tls_client_ca_file"), path+".tls_client_ca_file", "mutual TLS needs tls_cert_file and tls_key_file")
	}
	b.AllowAnonymous = bm.boolean(p, "allow_anonymous", false)
	return b
}

func defaultDataDir() string {
	// systemd passes a colon-separated list when StateDirectory= names several.
	if dir, _, _ := strings.Cut(os.Getenv(stateDirectoryVariable), ":"); dir != "" {
		return dir
	}
	return DefaultDataDir
}

func (p *parser) checkAgentID(n *yaml.Node, path, id string) {
	switch {
	case id == "":
		p.errorf(n, path, "agent id cannot be empty")
	case strings.ContainsRune(id, '/'):
		p.errorf(n, path, "agent id %q cannot contain '/'", id)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		p.errorf(n, path, "agent id %q cannot contain whitespace", id)
	}
}

func (p *parser) checkHostPort(n *yaml.Node, path, addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		p.errorf(n, path, "%q is not a host:port address (e.g. 127.0.0.1:9100 or :9100; \"\" disables the server)", addr)
	}
}

// ---- processors ----

func (p *parser) processors(n *yaml.Node, path string) {
	items := p.sequence(n, path)
	names := map[string]*yaml.Node{}
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		m := p.mapping(item, ipath, processorKeys)
		if m == nil {
			continue
		}
		proc := &Processor{Properties: map[string]string{}, Line: m.node.Line, Col: m.node.Column}
		pn := &procNodes{p: proc, path: ipath, node: m.node}
		proc.Name = p.processorName(m, ipath, names)
		p.processorType(m, ipath, proc)
		proc.Schedule = p.schedule(m.get("schedule"), ipath+".schedule", proc.Spec)
		p.properties(m, ipath, pn)
		if at := m.get("auto_terminate"); at != nil {
			n := len(p.errs)
			pn.autoTerm = p.stringList(at, ipath+".auto_terminate")
			pn.autoBad = len(p.errs) > n
			for _, it := range pn.autoTerm {
				proc.AutoTerminate = append(proc.AutoTerminate, it.v)
			}
		}
		if proc.Name != "" {
			if _, dup := names[proc.Name]; !dup {
				names[proc.Name] = m.get("name")
			}
		}
		p.procs = append(p.procs, pn)
	}
}

func (p *parser) processorName(m *mapping, path string, seen map[string]*yaml.Node) string {
	nn := m.get("name")
	if nn == nil {
		p.errorf(m.node, path, "missing name: every processor needs a unique name")
		return ""
	}
	name, ok := p.scalar(nn, path+".name")
	if !ok {
		return ""
	}
	switch {
	case name == "":
		p.errorf(nn, path+".name", "processor name cannot be empty")
	case name == "." || name == "..":
		p.errorf(nn, path+".name", "processor name %q is not allowed", name)
	case strings.ContainsAny(name, `/\`):
		p.errorf(nn, path+".name", "processor name %q cannot contain '/' or '\\'", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		p.errorf(nn, path+".name", "processor name %q cannot contain control characters", name)
	default:
		if first, dup := seen[name]; dup {
			p.errorf(nn, path+".name", "duplicate processor name %q (first at line %d)", name, first.Line)
		}
	}
	return name
}

func (p *parser) processorType(m *mapping, path string, proc *Processor) {
	tn := m.get("type")
	if tn == nil {
		p.errorf(m.node, path, "missing type: say which processor this is (edgeagent processors lists them)")
		return
	}
	typ, ok := p.scalar(tn, path+".type")
	if !ok {
		return
	}
	proc.Type = typ
	spec, found := p.reg.Lookup(typ)
	if !found {
		var types []string
		for _, s := range p.reg.Specs() {
			types = append(types, s.Type)
		}
		p.errorf(tn, path+".type", "unknown processor type %q%s", typ, didYouMean(typ, types, "; `edgeagent processors` lists the types"))
		return
	}
	proc.Spec = spec
	if !spec.Available() {
		p.errorf(tn, path+".type", "processor type %s is not built into this binary: rebuild with -tags %s", typ, spec.BuildTag)
	}
}

func (p *parser) schedule(n *yaml.Node, path string, spec *edgeagent.ProcessorSpec) Schedule {
	s := Schedule{Yield: DefaultYield, Penalty: DefaultPenalty, Concurrency: DefaultConcurrency, Batch: DefaultBatch}
	if spec != nil {
		s.Period = spec.DefaultPeriod
	}
	m := p.mapping(n, path, scheduleKeys)
	s.Period = m.duration(p, "period", s.Period, false)
	s.Concurrency = int(m.integer(p, "concurrency", int64(s.Concurrency), 1, 1<<16))
	s.Yield = m.duration(p, "yield", s.Yield, false)
	s.Penalty = m.duration(p, "penalty", s.Penalty, false)
	s.Batch = int(m.integer(p, "batch", int64(s.Batch), 1, 1000))
	return s
}

// properties reads the properties section and checks it against the spec.
func (p *parser) properties(m *mapping, path string, pn *procNodes) {
	proc := pn.p
	ppath := path + ".properties"
	pm := p.mapping(m.get("properties"), ppath, nil)
	spec := proc.Spec
	for _, key := range pm.keys() {
		kn, vn := pm.entries[key].key, pm.entries[key].val
		kpath := ppath + "." + key
		if vn.Kind == yaml.ScalarNode && vn.ShortTag() == "!!null" {
			continue // written but empty: the default applies
		}
		v, ok := p.scalar(vn, kpath)
		if !ok {
			continue
		}
		proc.Properties[key] = v
		if spec == nil {
			continue
		}
		if ps, known := spec.Property(key); known {
			if msg := ps.CheckValue(v); msg != "" {
				p.errorf(vn, kpath, "%s", msg)
			}
			continue
		}
		if spec.Dynamic == nil {
			names := make([]string, len(spec.Properties))
			for i, ps := range spec.Properties {
				names[i] = ps.Name
			}
			allowed := "it has no properties"
			if len(names) > 0 {
				allowed = "it has: " + strings.Join(names, ", ")
			}
			p.errorf(kn, kpath, "unknown property %q for %s%s", key, spec.Type, didYouMean(key, names, "; "+allowed))
			delete(proc.Properties, key)
			continue
		}
		proc.Dynamic = append(proc.Dynamic, key)
		if spec.Dynamic.Relationships {
			if _, fixed := spec.Relationship(key); fixed {
				p.errorf(kn, kpath, "dynamic property %q has the name of a fixed relationship of %s; choose another name", key, spec.Type)
			} else {
				if pn.dynKeys == nil {
					pn.dynKeys = map[string]*yaml.Node{}
				}
				pn.dynKeys[key] = kn
			}
		}
		if spec.Dynamic.Expressions && strings.Contains(v, "${") {
			if _, err := edgeagent.CompileExpression(v); err != nil {
				p.errorf(vn, kpath, "%v", err)
			}
		}
	}
	if spec == nil {
		return
	}
	for _, ps := range spec.Properties {
		if _, set := proc.Properties[ps.Name]; !set && ps.Required && ps.Default == "" {
			where := pm.pos()
			if where == nil {
				where = m.node
			}
			about := ""
			if ps.Description != "" {
				about = ": " + strings.TrimSuffix(ps.Description, ".")
			}
			p.errorf(where, ppath, "missing required property %q%s", ps.Name, about)
		}
	}
}

// ---- connections ----

func (p *parser) connections(n *yaml.Node, path string) {
	nerr := len(p.errs)
	items := p.sequence(n, path)
	p.connsBroken = len(p.errs) > nerr
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		m := p.mapping(item, ipath, connectionKeys)
		if m == nil {
			continue
		}
		c := &Connection{Line: m.node.Line, Col: m.node.Column}
		cn := &connNodes{c: c, path: ipath}
		c.From, cn.from = p.endpoint(m, ipath, "from")
		c.To, cn.to = p.endpoint(m, ipath, "to")
		one, many := m.get("relationship"), m.get("relationships")
		switch {
		case one != nil && many != nil:
			p.errorf(many, ipath+".relationships", "set relationship or relationships, not both")
		case one != nil:
			if v, ok := p.scalar(one, ipath+".relationship"); ok {
				c.Relationships = []string{v}
				cn.rels = []listItem{{v: v, n: resolve(one), path: ipath + ".relationship"}}
				if v == "" {
					p.errorf(one, ipath+".relationship", "relationship cannot be empty")
				}
			}
		case many != nil:
			cn.rels = p.stringList(many, ipath+".relationships")
			for _, it := range cn.rels {
				c.Relationships = append(c.Relationships, it.v)
			}
			if len(c.Relationships) == 0 && resolve(many).Kind == yaml.SequenceNode {
				p.errorf(many, ipath+".relationships", "relationships cannot be empty")
			}
		default:
			p.errorf(m.node, ipath, "missing relationship: say which relationship of %q this connection takes", c.From)
		}
		c.MaxCount = m.integer(p, "max_count", DefaultMaxCount, 1, 1<<62)
		c.MaxBytes = m.size(p, "max_bytes", DefaultMaxBytes)
		c.ExpireAfter = m.duration(p, "expire_after", 0, false)
		c.Prioritizer = m.enum(p, "prioritizer", Prioritizers, DefaultPrioritizer)
		c.WhenFull = m.enum(p, "when_full", WhenFull, DefaultWhenFull)
		cn.complete = c.From != "" && c.To != "" && len(c.Relationships) > 0
		c.Name = c.From + "/" + strings.Join(c.Relationships, "+") + "/" + c.To
		if v, ok := m.scalar(p, "name"); ok {
			cn.complete = true
			c.Name = v
			if v == "" {
				p.errorf(m.get("name"), ipath+".name", "connection name cannot be empty")
			}
		}
		p.conns = append(p.conns, cn)
	}
}

// endpoint reads from or to.
func (p *parser) endpoint(m *mapping, path, key string) (string, *yaml.Node) {
	n := m.get(key)
	if n == nil {
		p.errorf(m.node, path, "missing %s: name the processor this connection goes %s", key, key)
		return "", nil
	}
	v, ok := p.scalar(n, path+"."+key)
	if !ok {
		return "", nil
	}
	return v, resolve(n)
}

// ---- retired connections ----

// retiredConnections reads retired_connections: connections removed from
// the flow whose queues may still hold flowfiles, and what happens to them.
func (p *parser) retiredConnections(n *yaml.Node, path string) {
	seen := map[string]*yaml.Node{}
	for i, item := range p.sequence(n, path) {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		m := p.mapping(item, ipath, retiredKeys)
		if m == nil {
			continue
		}
		r := &RetiredConnection{Line: m.node.Line, Col: m.node.Column}
		rn := &retiredNodes{r: r, path: ipath}
		if nn := m.get("name"); nn == nil {
			p.errorf(m.node, ipath, "missing name: name the connection that left the flow (its name, or FROM/RELATIONSHIP/TO)")
		} else if v, ok := p.scalar(nn, ipath+".name"); ok {
			r.Name, rn.name = v, resolve(nn)
			switch first, dup := seen[v]; {
			case v == "":
				p.errorf(nn, ipath+".name", "connection name cannot be empty")
			case dup:
				p.errorf(nn, ipath+".name", "connection %q is retired twice (first at line %d)", v, first.Line)
			default:
				seen[v] = rn.name
			}
		}
		if tn := m.get("to"); tn != nil {
			if v, ok := p.scalar(tn, ipath+".to"); ok {
				r.To, rn.to = v, resolve(tn)
			}
		}
		def := ""
		if rn.to != nil {
			def = RetireDrain
		}
		r.Action = m.enum(p, "action", RetireActions, def)
		switch {
		case m.get("action") == nil && rn.to == nil:
			p.errorf(m.node, ipath, "missing action: say what happens to the connection's queued flowfiles: %s",
				"drain (with to: the processor that takes them), drop or keep")
		case r.Action == RetireDrain && rn.to == nil && m.get("action") != nil:
			p.errorf(m.get("action"), ipath+".action", "action drain needs to: the processor that takes the queued flowfiles")
		case r.Action != RetireDrain && r.Action != "" && rn.to != nil:
			p.errorf(rn.to, ipath+".to", "to is only used with action drain (action is %s)", r.Action)
		}
		p.retired = append(p.retired, rn)
	}
}

// checkRetired checks retired_connections against the flow: a retired
// connection is not also a connection, and the processor that drains one
// exists and takes input.
func (p *parser) checkRetired(byName map[string]*procNodes, names []string, connNames map[string]*connNodes) {
	for _, rn := range p.retired {
		r := rn.r
		if cn, live := connNames[r.Name]; live && rn.name != nil {
			p.errorf(rn.name, rn.path+".name", "connection %q is in connections (line %d) and in retired_connections; a connection that stays in the flow keeps its flowfiles: remove it from one of them", r.Name, cn.c.Line)
		}
		if r.Action != RetireDrain || rn.to == nil {
			continue
		}
		to := p.lookupProc(byName, names, r.To, rn.to, rn.path+".to")
		if to == nil {
			continue
		}
		to.incoming++
		if spec := to.p.Spec; spec != nil && spec.Input == edgeagent.InputForbidden {
			p.errorf(rn.to, rn.path+".to", "processor %q (%s) is a source and takes no incoming connections", r.To, spec.Type)
		}
	}
}

// ---- checks across sections ----

// checkGraph checks connections against processors: names, relationships,
// input requirements, and that every relationship goes somewhere.
func (p *parser) checkGraph() {
	byName := map[string]*procNodes{}
	var names []string
	for _, pn := range p.procs {
		if pn.p.Name != "" {
			if _, dup := byName[pn.p.Name]; !dup {
				byName[pn.p.Name] = pn
				names = append(names, pn.p.Name)
			}
		}
	}
	connected := map[string]map[string]bool{} // processor -> relationship -> connected
	connNames := map[string]*connNodes{}
	for _, cn := range p.conns {
		c := cn.c
		if first, dup := connNames[c.Name]; dup && c.Name != "" && cn.complete {
			p.errorf(cn.pos(), cn.path, "duplicate connection name %q (first at line %d); give one of them a name", c.Name, first.c.Line)
		} else if cn.complete {
			connNames[c.Name] = cn
		}
		from := p.lookupProc(byName, names, c.From, cn.from, cn.path+".from")
		to := p.lookupProc(byName, names, c.To, cn.to, cn.path+".to")
		if !cn.complete && from != nil {
			from.suspect = true
		}
		if to != nil {
			to.incoming++
			if spec := to.p.Spec; spec != nil && spec.Input == edgeagent.InputForbidden {
				p.errorf(cn.to, cn.path+".to", "processor %q (%s) is a source and takes no incoming connections", c.To, spec.Type)
			}
		}
		if from == nil || from.p.Spec == nil {
			continue
		}
		rels := relNames(from.p)
		for _, it := range cn.rels {
			r := it.v
			if !slices.Contains(rels, r) {
				from.suspect = true
				p.errorf(it.n, it.path, "processor %q (%s) has no relationship %q%s",
					c.From, from.p.Type, r, didYouMean(r, rels, "; it has: "+strings.Join(rels, ", ")))
				continue
			}
			if connected[c.From] == nil {
				connected[c.From] = map[string]bool{}
			}
			connected[c.From][r] = true
		}
	}
	p.checkRetired(byName, names, connNames)
	for _, pn := range p.procs {
		proc, spec := pn.p, pn.p.Spec
		if spec == nil {
			continue
		}
		if spec.Input == edgeagent.InputRequired && pn.incoming == 0 && proc.Name != "" && !pn.suspect && !p.connsBroken {
			p.errorf(pn.node, pn.path, "processor %q (%s) needs an incoming connection", proc.Name, spec.Type)
		}
		rels := relNames(proc)
		seen := map[string]bool{}
		for _, it := range pn.autoTerm {
			r, n, apath := it.v, it.n, it.path
			switch {
			case !slices.Contains(rels, r):
				p.errorf(n, apath, "auto_terminate names %q, which is not a relationship of %s%s",
					r, spec.Type, didYouMean(r, rels, "; it has: "+strings.Join(rels, ", ")))
			case seen[r]:
				p.errorf(n, apath, "relationship %q is listed twice", r)
			case connected[proc.Name][r]:
				p.errorf(n, apath, "relationship %q of processor %q is connected and auto-terminated; remove it from one of them", r, proc.Name)
			}
			seen[r] = true
		}
		if proc.Name == "" || pn.suspect || pn.autoBad || p.connsBroken {
			continue
		}
		for _, r := range rels {
			if !connected[proc.Name][r] && !seen[r] {
				n, path := pn.node, pn.path
				if kn, dynamic := pn.dynKeys[r]; dynamic {
					n, path = kn, pn.path+".properties."+r
				}
				p.errorf(n, path, "relationship %q of processor %q is neither connected nor auto-terminated", r, proc.Name)
			}
		}
	}
}

func (cn *connNodes) pos() *yaml.Node {
	if cn.from != nil {
		return cn.from
	}
	return cn.to
}

func (p *parser) lookupProc(byName map[string]*procNodes, names []string, name string, n *yaml.Node, path string) *procNodes {
	if n == nil {
		return nil
	}
	if pn, ok := byName[name]; ok {
		return pn
	}
	p.errorf(n, path, "unknown processor %q%s", name, didYouMean(name, names, ""))
	if meant := edgeagent.SimilarNames(name, names); len(meant) > 0 {
		byName[meant[0]].suspect = true
	}
	return nil
}

func relNames(proc *Processor) []string {
	var names []string
	for _, r := range proc.Relationships() {
		names = append(names, r.Name)
	}
	return names
}

// didYouMean suggests the names close to s, or adds otherwise.
func didYouMean(s string, candidates []string, otherwise string) string {
	close := edgeagent.SimilarNames(s, candidates)
	if len(close) > 3 {
		close = close[:3]
	}
	if len(close) == 0 {
		return otherwise
	}
	q := make([]string, len(close))
	for i, c := range close {
		q[i] = strconv.Quote(c)
	}
	if len(q) == 1 {
		return " (did you mean " + q[0] + "?)"
	}
	return " (did you mean " + strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1] + "?)"
}

// ---- YAML node helpers ----

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "an unknown node"
}

// entry is one key of a mapping.
type entry struct{ key, val *yaml.Node }

// mapping is a checked YAML mapping. A nil *mapping (the section is absent
// or not a mapping) answers every lookup with "not set".
type mapping struct {
	p       *parser
	node    *yaml.Node
	path    string
	entries map[string]entry
	order   []string
}

// mapping checks that n is a mapping whose keys are in allowed (any key
// when allowed is nil), reporting unknown and duplicate keys. It returns nil
// when n is nil, and an empty mapping for a null node (`schedule:` with
// nothing after it).
func (p *parser) mapping(n *yaml.Node, path string, allowed []string) *mapping {
	if n == nil {
		return nil
	}
	n = resolve(n)
	m := &mapping{p: p, node: n, path: path, entries: map[string]entry{}}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return m
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected a mapping, got %s", describe(n))
		return nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key := k.Value
		kpath := joinPath(path, key)
		if first, dup := m.entries[key]; dup {
			p.errorf(k, kpath, "duplicate key %q (first at line %d)", key, first.key.Line)
			continue
		}
		if allowed != nil && !slices.Contains(allowed, key) && !(path == "" && strings.HasPrefix(key, "x-")) {
			p.errorf(k, kpath, "unknown key %q%s; allowed keys: %s", key, didYouMean(key, allowed, ""), strings.Join(allowed, ", "))
			continue
		}
		m.entries[key] = entry{k, v}
		m.order = append(m.order, key)
	}
	// <<: *anchor merges keys the mapping does not set itself.
	for _, mn := range merges {
		mn = resolve(mn)
		srcs := []*yaml.Node{mn}
		if mn.Kind == yaml.SequenceNode {
			srcs = mn.Content
		}
		for _, src := range srcs {
			if p.merges++; p.merges > maxMerges {
				if p.merges == maxMerges+1 {
					p.errorf(mn, path, "too many merges (<<): more than %d", maxMerges)
				}
				break
			}
			sm := p.mapping(src, path, allowed)
			if sm == nil {
				continue
			}
			for _, key := range sm.order {
				if _, set := m.entries[key]; !set {
					m.entries[key] = sm.entries[key]
					m.order = append(m.order, key)
				}
			}
		}
	}
	return m
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// get returns the value node of key, or nil.
func (m *mapping) get(key string) *yaml.Node {
	if m == nil {
		return nil
	}
	if e, ok := m.entries[key]; ok {
		return e.val
	}
	return nil
}

// keys returns the keys in file order.
func (m *mapping) keys() []string {
	if m == nil {
		return nil
	}
	return m.order
}

// pos returns the mapping's node, or nil.
func (m *mapping) pos() *yaml.Node {
	if m == nil {
		return nil
	}
	return m.node
}

// scalar returns the text of a scalar node; YAML booleans become "true" or
// "false" and null becomes "". Mappings and lists are reported.
func (p *parser) scalar(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected a single value, got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!null":
		return "", true
	case "!!bool":
		return strconv.FormatBool(strings.EqualFold(n.Value, "true")), true
	}
	return n.Value, true
}

// scalar returns the value of key when it is set.
func (m *mapping) scalar(p *parser, key string) (string, bool) {
	n := m.get(key)
	if n == nil {
		return "", false
	}
	return p.scalar(n, joinPath(m.path, key))
}

// errorf reports a problem with key's value.
func (m *mapping) errorf(p *parser, key, format string, args ...any) {
	p.errorf(m.get(key), joinPath(m.path, key), format, args...)
}

// duration returns key as a duration, or def. positive refuses 0.
func (m *mapping) duration(p *parser, key string, def time.Duration, positive bool) time.Duration {
	v, ok := m.scalar(p, key)
	if !ok {
		return def
	}
	d, err := edgeagent.ParseDuration(v)
	switch {
	case err != nil:
		m.errorf(p, key, "%v", err)
		return def
	case positive && d == 0:
		m.errorf(p, key, "%s must be greater than 0", key)
		return def
	}
	return d
}

// size returns key as a byte size greater than 0, or def.
func (m *mapping) size(p *parser, key string, def int64) int64 {
	v, ok := m.scalar(p, key)
	if !ok {
		return def
	}
	n, err := edgeagent.ParseSize(v)
	switch {
	case err != nil:
		m.errorf(p, key, "%v", err)
		return def
	case n <= 0:
		m.errorf(p, key, "%s must be greater than 0", key)
		return def
	}
	return n
}

// integer returns key as a whole number in [lo, hi], or def.
func (m *mapping) integer(p *parser, key string, def, lo, hi int64) int64 {
	v, ok := m.scalar(p, key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
	switch {
	case err != nil:
		m.errorf(p, key, "%s must be a whole number, got %q", key, v)
		return def
	case n < lo:
		m.errorf(p, key, "%s must be at least %d, got %d", key, lo, n)
		return def
	case n > hi:
		m.errorf(p, key, "%s must be at most %d, got %d", key, hi, n)
		return def
	}
	return n
}

// enum returns key when it is one of allowed, or def.
func (m *mapping) enum(p *parser, key string, allowed []string, def string) string {
	v, ok := m.scalar(p, key)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, v) {
		m.errorf(p, key, "%s %q is not one of %s%s", key, v, strings.Join(allowed, ", "), didYouMean(v, allowed, ""))
		return def
	}
	return v
}

// boolean returns key as true or false, or def.
func (m *mapping) boolean(p *parser, key string, def bool) bool {
	v, ok := m.scalar(p, key)
	if !ok {
		return def
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	m.errorf(p, key, "%q is not a boolean (true or false)", v)
	return def
}

// sequence returns the items of a list node (nothing for null).
func (p *parser) sequence(n *yaml.Node, path string) []*yaml.Node {
	n = resolve(n)
	switch {
	case n.Kind == yaml.SequenceNode:
		return n.Content
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return nil
	}
	p.errorf(n, path, "expected a list, got %s", describe(n))
	return nil
}

// listItem is one value of a list, with its node and path.
type listItem struct {
	v    string
	n    *yaml.Node
	path string
}

// stringList reads a list of single values.
func (p *parser) stringList(n *yaml.Node, path string) []listItem {
	var items []listItem
	for i, item := range p.sequence(n, path) {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if v, ok := p.scalar(item, ipath); ok {
			items = append(items, listItem{v: v, n: resolve(item), path: ipath})
		}
	}
	return items
}
