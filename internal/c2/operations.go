package c2

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
)

// Operation is a C2Operation: what the server asks of the agent.
// Operation is matched case-insensitively (the protocol's enum names are
// upper case), Operand likewise (lower case in MiNiFi's JSON).
type Operation struct {
	Identifier   string            `json:"identifier"`
	Operation    string            `json:"operation"`
	Operand      string            `json:"operand,omitempty"`
	Args         map[string]string `json:"args,omitempty"`
	Dependencies []string          `json:"dependencies,omitempty"`
}

// The states of an OperationState (C2OperationState.OperationState).
const (
	FullyApplied           = "FULLY_APPLIED"
	PartiallyApplied       = "PARTIALLY_APPLIED"
	OperationNotUnderstood = "OPERATION_NOT_UNDERSTOOD"
	NoOperation            = "NO_OPERATION"
	NotApplied             = "NOT_APPLIED"
)

// OperationState is a C2OperationState.
type OperationState struct {
	State   string `json:"state"`
	Details string `json:"details,omitempty"`
}

// Ack is a C2OperationAck.
type Ack struct {
	OperationID    string         `json:"operationId"`
	OperationState OperationState `json:"operationState"`
	AgentInfo      *AgentInfo     `json:"agentInfo,omitempty"`
	FlowInfo       *FlowInfo      `json:"flowInfo,omitempty"`
	// Edge carries a describe operation's answer.
	Edge *Description `json:"edgeagent,omitempty"`
}

// Description is the answer to describe: the processor manifest, the
// current flow file and the queues.
type Description struct {
	Manifest []ProcessorManifest `json:"manifest"`
	FlowFile string              `json:"flow_file"`
	Flow     string              `json:"flow"`
	Status   *engine.Status      `json:"status"`
}

// ProcessorManifest describes one processor type.
type ProcessorManifest struct {
	Type          string             `json:"type"`
	Summary       string             `json:"summary"`
	BuildTag      string             `json:"build_tag,omitempty"`
	Available     bool               `json:"available"`
	Properties    []PropertyManifest `json:"properties"`
	Relationships []string           `json:"relationships"`
}

// PropertyManifest describes one property.
type PropertyManifest struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Required    bool     `json:"required,omitempty"`
	Default     string   `json:"default,omitempty"`
	Allowed     []string `json:"allowed,omitempty"`
	Sensitive   bool     `json:"sensitive,omitempty"`
}

// OperationName returns the agent.c2.allow name of op ("update_configuration",
// "describe", ...), or "" when the operation is unknown.
func OperationName(op Operation) string {
	operand := strings.ToLower(op.Operand)
	switch strings.ToUpper(op.Operation) {
	case "UPDATE":
		switch operand {
		case "configuration":
			return "update_configuration"
		case "asset":
			return "update_asset"
		}
	case "DESCRIBE":
		if operand == "" || operand == "manifest" {
			return "describe"
		}
	case "CLEAR":
		if operand == "connection" {
			return "clear_connection"
		}
	case "START":
		return "start"
	case "STOP":
		return "stop"
	case "RESTART":
		return "restart"
	case "TRANSFER":
		if operand == "debug" {
			return "transfer_debug"
		}
	}
	return ""
}

// maxDownload bounds a flow file or debug upload; assets are not bounded
// beyond the disk.
const maxDownload = 16 << 20

func (c *Client) execute(ctx context.Context, op Operation) (*Ack, func()) {
	ack := &Ack{OperationID: op.Identifier, AgentInfo: &AgentInfo{Identifier: c.agentID, AgentClass: c.cfg.AgentClass}}
	set := func(state, format string, args ...any) {
		ack.OperationState = OperationState{State: state, Details: fmt.Sprintf(format, args...)}
	}
	// result acknowledges an operation that either did what detail says or
	// failed with err.
	result := func(detail string, err error) {
		if err != nil {
			set(NotApplied, "%v", err)
		} else {
			set(FullyApplied, "%s", detail)
		}
	}
	var after func()
	name := OperationName(op)
	switch {
	case name == "":
		set(OperationNotUnderstood, "%v: %s %s", ErrNotSupported, op.Operation, op.Operand)
	case !c.cfg.Allows(name):
		set(NotApplied, "%v: %s", ErrNotAllowed, name)
	default:
		switch name {
		case "update_configuration":
			result(c.updateConfiguration(ctx, op))
			if st, err := c.agent.Status(); err == nil {
				ack.FlowInfo = &FlowInfo{FlowID: c.flowID(st.FlowSHA256)}
			}
		case "update_asset":
			result(c.updateAsset(ctx, op))
		case "describe":
			d, err := c.describe()
			if err != nil {
				set(NotApplied, "describing: %v", err)
			} else {
				ack.Edge = d
				set(FullyApplied, "manifest of %d processor types, %d queues", len(d.Manifest), len(d.Status.Queues))
			}
		case "restart":
			if c.opts.Restart == nil {
				set(NotApplied, "%v: restart (the agent was started without a restart hook)", ErrNotSupported)
			} else {
				set(FullyApplied, "restarting")
				after = c.opts.Restart
			}
		case "transfer_debug":
			result(c.transferDebug(ctx, op))
		case "start", "stop", "clear_connection":
			result(c.control(ctx, name, op))
		default:
			set(NotApplied, "%v: %s", ErrNotSupported, name)
		}
	}
	c.remember(op.Identifier, ack.OperationState)
	return ack, after
}

// resolve makes a location absolute: relative to the C2 server's URL on
// the http channel.
func (c *Client) resolve(loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("parsing location %q: %w", loc, err)
	}
	if !u.IsAbs() {
		if c.cfg.URL == "" {
			return "", fmt.Errorf("location %q is not an absolute URL", loc)
		}
		base, err := url.Parse(c.cfg.URL)
		if err != nil {
			return "", err
		}
		u = base.ResolveReference(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("location %q: only http and https are fetched", loc)
	}
	return u.String(), nil
}

// get starts a download of loc; the caller closes the body.
func (c *Client) get(ctx context.Context, loc string) (io.ReadCloser, error) {
	u, err := c.resolve(loc)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if err := c.authorize(req); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("downloading %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}

// updateConfiguration replaces the flow: args "flow" (the YAML itself) or
// "location" (a URL to fetch it from), optional "flowId".
func (c *Client) updateConfiguration(ctx context.Context, op Operation) (string, error) {
	var data []byte
	switch {
	case op.Args["flow"] != "":
		data = []byte(op.Args["flow"])
	case op.Args["location"] != "":
		body, err := c.get(ctx, op.Args["location"])
		if err != nil {
			return "", err
		}
		data, err = io.ReadAll(io.LimitReader(body, maxDownload+1))
		body.Close()
		if err != nil {
			return "", fmt.Errorf("downloading the flow: %w", err)
		}
		if len(data) > maxDownload {
			return "", fmt.Errorf("the flow is larger than %d bytes", maxDownload)
		}
	default:
		return "", errors.New("update configuration needs the argument flow or location")
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if id := op.Args["flowId"]; id != "" {
		c.mu.Lock()
		c.flowIDs[hash] = id
		c.mu.Unlock()
	}
	path := c.opts.ConfigPath
	staging := path + ".c2-staging"
	if err := writeFileSync(staging, data); err != nil {
		return "", fmt.Errorf("staging the new flow: %w", err)
	}
	defer os.Remove(staging) // gone after the rename, unless we failed before
	if _, err := config.Parse(staging, data, c.opts.Registry); err != nil {
		return "", fmt.Errorf("the new flow does not validate; the running flow is kept:\n%w", err)
	}
	prev, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the current flow: %w", err)
	}
	if err := writeAtomic(path+".previous", prev); err != nil {
		return "", fmt.Errorf("keeping the previous flow: %w", err)
	}
	if err := os.Rename(staging, path); err != nil {
		return "", fmt.Errorf("installing the new flow: %w", err)
	}
	if err := c.reloadAndWait(ctx, hash); err != nil {
		if rerr := writeAtomic(path, prev); rerr != nil {
			return "", fmt.Errorf("%w (%v) and restoring the previous flow file failed: %v", ErrRolledBack, err, rerr)
		}
		c.agent.Reload(ctx)
		return "", fmt.Errorf("%w: %v", ErrRolledBack, err)
	}
	return fmt.Sprintf("flow %s running", hash), nil
}

// reloadAndWait reloads the flow file and waits until the flow with that
// hash runs, at most agent.c2.update_timeout.
func (c *Client) reloadAndWait(ctx context.Context, hash string) error {
	deadline := time.Now().Add(c.cfg.UpdateTimeout)
	ok := c.agent.Reload(ctx)
	why := func() string {
		if st, err := c.agent.Status(); err == nil && st.LastReloadErr != "" {
			return st.LastReloadErr
		}
		return "see the agent's log"
	}
	if !ok {
		return fmt.Errorf("the reload failed: %s", why())
	}
	for {
		st, err := c.agent.Status()
		if err == nil && st.FlowSHA256 == hash && c.agent.Healthy() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not running after %s: %s", c.cfg.UpdateTimeout, why())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// updateAsset installs a file in the assets directory: args assetUrl,
// assetFileName and sha256 (required: an asset whose hash is unknown is
// refused).
func (c *Client) updateAsset(ctx context.Context, op Operation) (string, error) {
	loc, name, want := op.Args["assetUrl"], op.Args["assetFileName"], strings.ToLower(op.Args["sha256"])
	switch {
	case loc == "":
		return "", errors.New("update asset needs the argument assetUrl")
	case name == "" || name != filepath.Base(name) || name == "." || name == ".." || isStaging(name):
		return "", fmt.Errorf("update asset needs a plain file name in assetFileName, got %q", name)
	case len(want) != 64:
		return "", errors.New("update asset needs the argument sha256 (64 hex digits); an asset is installed only if its hash matches")
	}
	if err := os.MkdirAll(c.cfg.AssetsDir, 0o750); err != nil {
		return "", fmt.Errorf("creating the assets directory: %w", err)
	}
	body, err := c.get(ctx, loc)
	if err != nil {
		return "", err
	}
	defer body.Close()
	f, err := os.CreateTemp(c.cfg.AssetsDir, "."+name+".staging-*")
	if err != nil {
		return "", fmt.Errorf("staging the asset: %w", err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("downloading the asset: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("%w: asset %s is %s, the operation says %s; not installed", ErrChecksumMismatch, name, got, want)
	}
	dst := filepath.Join(c.cfg.AssetsDir, name)
	if err := os.Rename(f.Name(), dst); err != nil {
		return "", fmt.Errorf("installing the asset: %w", err)
	}
	syncDir(c.cfg.AssetsDir)
	msg := fmt.Sprintf("asset %s installed (%d bytes, sha256 %s)", dst, n, want)
	// Processors load their models and files at start: restart the flow
	// so that those using the asset load the new one.
	if r, ok := c.agent.(FlowRestarter); ok {
		if !r.RestartFlow(ctx) {
			return "", fmt.Errorf("%s, but the flow did not restart with it", msg)
		}
		msg += "; flow restarted to load it"
	}
	return msg, nil
}

func isStaging(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".staging-")
}

// describe answers the describe operation.
func (c *Client) describe() (*Description, error) {
	st, err := c.agent.Status()
	if err != nil {
		return nil, err
	}
	flow, err := os.ReadFile(st.FlowFile)
	if err != nil {
		return nil, fmt.Errorf("reading the flow: %w", err)
	}
	d := &Description{FlowFile: st.FlowFile, Flow: string(flow), Status: st}
	for _, s := range c.opts.Registry.Specs() {
		pm := ProcessorManifest{Type: s.Type, Summary: s.Summary, BuildTag: s.BuildTag, Available: s.New != nil,
			Properties: []PropertyManifest{}, Relationships: []string{}}
		for _, p := range s.Properties {
			pm.Properties = append(pm.Properties, PropertyManifest{Name: p.Name, Description: p.Description,
				Required: p.Required, Default: p.Default, Allowed: p.Allowed, Sensitive: p.Sensitive})
		}
		for _, r := range s.Relationships {
			pm.Relationships = append(pm.Relationships, r.Name)
		}
		d.Manifest = append(d.Manifest, pm)
	}
	return d, nil
}

// transferDebug uploads a tar.gz bundle (flow file, status, device stats)
// with a POST to args target.
func (c *Client) transferDebug(ctx context.Context, op Operation) (string, error) {
	target := op.Args["target"]
	if target == "" {
		return "", errors.New("transfer debug needs the argument target (an upload URL)")
	}
	u, err := c.resolve(target)
	if err != nil {
		return "", err
	}
	d, err := c.describe()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: time.Now()}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	status, _ := json.MarshalIndent(d.Status, "", "  ")
	device, _ := c.devstats.Read()
	dev, _ := json.MarshalIndent(device, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"flow.yaml", []byte(d.Flow)}, {"status.json", status}, {"device.json", dev}} {
		if err := add(f.name, f.b); err != nil {
			return "", fmt.Errorf("building the debug bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	size := buf.Len()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &buf)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/gzip")
	if err := c.authorize(req); err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("uploading the debug bundle: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("uploading the debug bundle: %s", resp.Status)
	}
	return fmt.Sprintf("debug bundle (%d bytes) uploaded", size), nil
}

// ---- files ----

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFileSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeAtomic replaces p with data: a temporary file, fsync, rename.
func writeAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(p))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Controller is implemented by agents that can start and stop single
// processors and clear connections of the running flow (*engine.Agent).
type Controller interface {
	StartProcessor(ctx context.Context, name string) error
	StopProcessor(ctx context.Context, name string) error
	ClearConnection(ctx context.Context, name string) (int, error)
}

// control runs start, stop and clear connection. The component is named by
// args processor / connection (or name), else by the operand.
func (c *Client) control(ctx context.Context, name string, op Operation) (string, error) {
	ctl, ok := c.agent.(Controller)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNotSupported, name)
	}
	target := func(keys ...string) string {
		for _, k := range keys {
			if v := op.Args[k]; v != "" {
				return v
			}
		}
		if o := op.Operand; o != "" && !strings.EqualFold(o, "connection") {
			return o
		}
		return ""
	}
	switch name {
	case "clear_connection":
		conn := target("connection", "name")
		if conn == "" {
			return "", errors.New("clear connection: name the connection in args.connection")
		}
		n, err := ctl.ClearConnection(ctx, conn)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("cleared %d flowfiles from %s", n, conn), nil
	default:
		proc := target("processor", "component", "name")
		if proc == "" {
			return "", fmt.Errorf("%s: name the processor in args.processor", name)
		}
		if name == "start" {
			if err := ctl.StartProcessor(ctx, proc); err != nil {
				return "", err
			}
			return fmt.Sprintf("processor %s started", proc), nil
		}
		if err := ctl.StopProcessor(ctx, proc); err != nil {
			return "", err
		}
		return fmt.Sprintf("processor %s stopped", proc), nil
	}
}

// FlowRestarter is implemented by agents that can restart the running flow
// from an unchanged flow file (*engine.Agent), so processors reload assets.
type FlowRestarter interface {
	RestartFlow(ctx context.Context) bool
}
