package c2

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"edgeagent.dev/internal/devstats"
	"edgeagent.dev/internal/engine"
)

// The JSON documents of the MiNiFi C2 protocol (nifi c2-protocol-api),
// reduced to the fields this agent fills or reads. Field names must match
// the Java model's bean properties.

// Heartbeat is a C2Heartbeat.
type Heartbeat struct {
	Identifier string      `json:"identifier"`
	Created    int64       `json:"created"` // Unix milliseconds
	DeviceInfo *DeviceInfo `json:"deviceInfo,omitempty"`
	AgentInfo  *AgentInfo  `json:"agentInfo,omitempty"`
	FlowInfo   *FlowInfo   `json:"flowInfo,omitempty"`
	// Edge holds what the protocol has no field for.
	Edge *EdgeInfo `json:"edgeagent,omitempty"`
}

// HeartbeatResponse is a C2HeartbeatResponse.
type HeartbeatResponse struct {
	RequestedOperations []Operation `json:"requestedOperations"`
}

// DeviceInfo is the protocol's DeviceInfo.
type DeviceInfo struct {
	Identifier string      `json:"identifier"`
	SystemInfo *SystemInfo `json:"systemInfo,omitempty"`
}

// SystemInfo is the protocol's SystemInfo.
type SystemInfo struct {
	MachineArch     string  `json:"machineArch"`
	OperatingSystem string  `json:"operatingSystem"`
	PhysicalMem     int64   `json:"physicalMem"`
	VCores          int     `json:"vCores"`
	MemoryUsage     int64   `json:"memoryUsage"`
	CPUUtilization  float64 `json:"cpuUtilization"`
}

// AgentInfo is the protocol's AgentInfo.
type AgentInfo struct {
	Identifier string       `json:"identifier"`
	AgentClass string       `json:"agentClass"`
	Status     *AgentStatus `json:"status,omitempty"`
}

// AgentStatus is the protocol's AgentStatus.
type AgentStatus struct {
	Uptime       int64              `json:"uptime"` // milliseconds
	Repositories *AgentRepositories `json:"repositories,omitempty"`
}

// AgentRepositories is the protocol's AgentRepositories.
type AgentRepositories struct {
	FlowFileStatus *RepositoryStatus `json:"flowFileStatus,omitempty"`
}

// RepositoryStatus is the protocol's AgentRepositoryStatus.
type RepositoryStatus struct {
	Size        int64 `json:"size"`
	SizeMax     int64 `json:"sizeMax"`
	DataSize    int64 `json:"dataSize"`
	DataSizeMax int64 `json:"dataSizeMax"`
}

// FlowInfo is the protocol's FlowInfo.
type FlowInfo struct {
	FlowID     string                     `json:"flowId"`
	Components map[string]ComponentStatus `json:"components,omitempty"`
	Queues     map[string]QueueStatus     `json:"queues,omitempty"`
}

// ComponentStatus is the protocol's ComponentStatus.
type ComponentStatus struct {
	Running bool `json:"running"`
}

// QueueStatus is the protocol's FlowQueueStatus.
type QueueStatus struct {
	Size        int64 `json:"size"`
	SizeMax     int64 `json:"sizeMax"`
	DataSize    int64 `json:"dataSize"`
	DataSizeMax int64 `json:"dataSizeMax"`
}

// EdgeInfo is edgeagent's extension of the heartbeat.
type EdgeInfo struct {
	Version         string                    `json:"version"`
	BuildTags       []string                  `json:"build_tags"`
	FlowFile        string                    `json:"flow_file"`
	FlowSHA256      string                    `json:"flow_sha256"`
	Reloads         int64                     `json:"reloads"`
	ReloadFailures  int64                     `json:"reload_failures"`
	LastReloadError string                    `json:"last_reload_error,omitempty"`
	Repository      engine.RepositoryStatus   `json:"repository"`
	Queues          []engine.QueueStatus      `json:"queues"`
	Processors      []engine.ProcessorStatus  `json:"processors"`
	Device          *devstats.Stats           `json:"device,omitempty"`
	Assets          map[string]string         `json:"assets,omitempty"` // file name -> sha256
	LastOperations  map[string]OperationState `json:"last_operations,omitempty"`
}

// buildHeartbeat reads the agent's status into a heartbeat.
func (c *Client) buildHeartbeat() (*Heartbeat, error) {
	st, err := c.agent.Status()
	if err != nil {
		return nil, err
	}
	hb := &Heartbeat{
		Identifier: newID(), Created: time.Now().UnixMilli(),
		AgentInfo: &AgentInfo{Identifier: c.agentID, AgentClass: c.cfg.AgentClass, Status: &AgentStatus{
			Uptime: int64(st.UptimeSeconds * 1000),
			Repositories: &AgentRepositories{FlowFileStatus: &RepositoryStatus{
				Size: sumCounts(st.Queues), DataSize: st.Repository.UsedBytes, DataSizeMax: st.Repository.MaxBytes,
			}},
		}},
		FlowInfo: &FlowInfo{FlowID: c.flowID(st.FlowSHA256), Components: map[string]ComponentStatus{}, Queues: map[string]QueueStatus{}},
		Edge: &EdgeInfo{
			Version: st.Version, BuildTags: c.opts.BuildTags, FlowFile: st.FlowFile, FlowSHA256: st.FlowSHA256,
			Reloads: st.Reloads, ReloadFailures: st.ReloadFailures, LastReloadError: st.LastReloadErr,
			Repository: st.Repository, Queues: st.Queues, Processors: st.Processors, Assets: c.assetHashes(),
		},
	}
	running := c.agent.Healthy() == nil
	for _, p := range st.Processors {
		hb.FlowInfo.Components[p.Name] = ComponentStatus{Running: running}
	}
	for _, q := range st.Queues {
		hb.FlowInfo.Queues[q.Name] = QueueStatus{Size: q.Count, SizeMax: q.MaxCount, DataSize: q.Bytes, DataSizeMax: q.MaxBytes}
	}
	hb.DeviceInfo = &DeviceInfo{Identifier: c.deviceID(), SystemInfo: &SystemInfo{
		MachineArch: runtime.GOARCH, OperatingSystem: runtime.GOOS, VCores: runtime.NumCPU(),
	}}
	if ds, err := c.devstats.Read(); err == nil {
		hb.Edge.Device = ds
		if m := ds.Memory; m != nil {
			hb.DeviceInfo.SystemInfo.PhysicalMem = int64(m.TotalBytes)
			hb.DeviceInfo.SystemInfo.MemoryUsage = int64(m.UsedBytes)
		}
		if ds.CPUPercent != nil {
			hb.DeviceInfo.SystemInfo.CPUUtilization = *ds.CPUPercent / 100
		}
	}
	c.mu.Lock()
	if len(c.lastOps) > 0 {
		hb.Edge.LastOperations = make(map[string]OperationState, len(c.lastOps))
		for k, v := range c.lastOps {
			hb.Edge.LastOperations[k] = v
		}
	}
	c.mu.Unlock()
	return hb, nil
}

func sumCounts(qs []engine.QueueStatus) int64 {
	var n int64
	for _, q := range qs {
		n += q.Count
	}
	return n
}

// deviceID is the machine ID (systemd's /etc/machine-id) or the host name.
func (c *Client) deviceID() string {
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && len(b) >= 32 {
		return string(b[:32])
	}
	h, _ := os.Hostname()
	return h
}

// assetHashes returns the sha256 of each file in the assets directory,
// hashing a file again only when its size or modification time changed.
func (c *Client) assetHashes() map[string]string {
	entries, err := os.ReadDir(c.cfg.AssetsDir)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && !isStaging(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(c.cfg.AssetsDir, n)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		key := assetKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		if h, ok := c.assetCache[n]; ok && h.key == key {
			out[n] = h.sum
			continue
		}
		sum, err := fileSHA256(p)
		if err != nil {
			continue
		}
		c.assetCache[n] = assetHash{key: key, sum: sum}
		out[n] = sum
	}
	return out
}

type assetKey struct{ size, mtime int64 }

type assetHash struct {
	key assetKey
	sum string
}

// newID returns a random identifier (128 bits, hex).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
