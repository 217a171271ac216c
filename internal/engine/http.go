package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/provenance"
)

// Status is the agent's state as served on /api/status.
type Status struct {
	AgentID        string            `json:"agent_id"`
	Version        string            `json:"version"`
	FlowFile       string            `json:"flow_file"`
	FlowSHA256     string            `json:"flow_sha256"`
	UptimeSeconds  float64           `json:"uptime_seconds"`
	Reloads        int64             `json:"reloads"`
	ReloadFailures int64             `json:"reload_failures"`
	LastReloadErr  string            `json:"last_reload_error,omitempty"`
	Repository     RepositoryStatus  `json:"repository"`
	Processors     []ProcessorStatus `json:"processors"`
	Queues         []QueueStatus     `json:"queues"`
}

// RepositoryStatus is the repository's disk use.
type RepositoryStatus struct {
	Path      string `json:"path"`
	UsedBytes int64  `json:"used_bytes"`
	FileBytes int64  `json:"file_bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Full      bool   `json:"full"`
}

// Handler serves /healthz, /api/status, /api/queues, /api/provenance and,
// when AgentOptions.Metrics is set, /metrics.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.opts.Metrics != nil {
		mux.Handle("GET /metrics", a.opts.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Status()
		writeJSON(w, st, err)
	})
	mux.HandleFunc("GET /api/queues", func(w http.ResponseWriter, r *http.Request) {
		e := a.engine.Load()
		if e == nil {
			http.Error(w, "flow not running", http.StatusServiceUnavailable)
			return
		}
		qs, err := e.Queues()
		writeJSON(w, qs, err)
	})
	mux.HandleFunc("GET /api/provenance", func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseProvenanceQuery(r.URL.Query().Get("flowfile"), r.URL.Query().Get("since"), r.URL.Query().Get("limit"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := QueryProvenance(a.repo, q)
		writeJSON(w, res, err)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Healthy returns nil while the flow runs and the repository is writable.
func (a *Agent) Healthy() error {
	if e := a.engine.Load(); e == nil || !e.Running() {
		return errors.New("flow not running")
	}
	if err := a.repo.Err(); err != nil {
		return fmt.Errorf("repository not writable: %w", err)
	}
	return nil
}

// Status returns the agent's state.
func (a *Agent) Status() (*Status, error) {
	e := a.engine.Load()
	if e == nil {
		return nil, errors.New("flow not started yet")
	}
	used, file, budget := a.repo.Usage()
	st := &Status{
		AgentID: e.flow.Agent.ID, Version: a.opts.Version, FlowFile: e.flow.File, FlowSHA256: e.flow.Hash,
		UptimeSeconds: time.Since(a.started).Seconds(), Reloads: a.reloads.Load(), ReloadFailures: a.reloadFailures.Load(),
		Repository: RepositoryStatus{Path: a.repo.Path(), UsedBytes: used, FileBytes: file, MaxBytes: budget, Full: a.repo.Full()},
		Processors: e.Processors(),
	}
	if s := a.lastReloadErr.Load(); s != nil {
		st.LastReloadErr = *s
	}
	var err error
	st.Queues, err = e.Queues()
	return st, err
}

// ProvenanceQuery selects provenance events: the lineage of one flowfile,
// or the events since a time, at most Limit (newest kept).
type ProvenanceQuery struct {
	FlowFile edgeagent.ID
	Since    time.Time
	Limit    int
}

// ProvenanceResult is the answer to a ProvenanceQuery.
type ProvenanceResult struct {
	FlowFiles []edgeagent.ID     `json:"flowfiles,omitempty"`
	Events    []provenance.Event `json:"events"`
	Stats     provenance.Stats   `json:"stats"`
}

// ParseProvenanceQuery parses the CLI's and the HTTP API's parameters.
func ParseProvenanceQuery(flowfile, since, limit string) (ProvenanceQuery, error) {
	q := ProvenanceQuery{Limit: 100}
	if flowfile != "" {
		id, err := edgeagent.ParseID(flowfile)
		if err != nil {
			return q, err
		}
		q.FlowFile = id
	}
	if since != "" {
		d, err := edgeagent.ParseDuration(since)
		if err != nil {
			return q, fmt.Errorf("parsing since: %w", err)
		}
		q.Since = time.Now().Add(-d)
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 0 {
			return q, fmt.Errorf("parsing limit %q: not a non-negative integer", limit)
		}
		q.Limit = n
	}
	return q, nil
}

// QueryProvenance runs q against the repository.
func QueryProvenance(repo *buffer.Repo, q ProvenanceQuery) (*ProvenanceResult, error) {
	res := &ProvenanceResult{}
	err := repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		if res.Stats, err = provenance.ReadStats(tx); err != nil {
			return err
		}
		switch {
		case !q.FlowFile.IsZero():
			lin, err := provenance.Lineage(tx, q.FlowFile)
			if err != nil {
				return err
			}
			res.FlowFiles, res.Events = lin.FlowFiles, lin.Events
		case !q.Since.IsZero():
			res.Events, err = provenance.Since(tx, q.Since, 0)
			if err != nil {
				return err
			}
			if q.Limit > 0 && len(res.Events) > q.Limit {
				res.Events = res.Events[len(res.Events)-q.Limit:]
			}
		default:
			res.Events, err = provenance.Latest(tx, q.Limit)
		}
		return err
	})
	if res.Events == nil {
		res.Events = []provenance.Event{}
	}
	return res, err
}

// RepositoryQueues returns the status of every queue stored in repo (for
// the CLI on a stopped agent).
func RepositoryQueues(repo *buffer.Repo) ([]QueueStatus, error) {
	names, err := repo.Queues()
	if err != nil {
		return nil, err
	}
	qs := make([]*buffer.Queue, 0, len(names))
	for _, n := range names {
		q, err := repo.Queue(n, buffer.QueueConfig{})
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return QueueStatuses(qs)
}
