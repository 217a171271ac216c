package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/provenance"
)

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func cmdValidate(args []string, reg *edgeagent.Registry, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("name at least one flow file")}
	}
	problems := 0
	for _, path := range args {
		_, err := config.Load(path, reg)
		if err == nil {
			fmt.Fprintf(stdout, "%s: ok\n", path)
			continue
		}
		var ce edgeagent.ConfigErrors
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, ce.Error())
			problems += len(ce)
			continue
		}
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		problems++
	}
	if problems > 0 {
		fmt.Fprintf(stderr, "edgeagent validate: %d problem(s)\n", problems)
		return errReported
	}
	return nil
}

type propertyDoc struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Kind        string   `json:"kind"`
	Required    bool     `json:"required,omitempty"`
	Default     string   `json:"default,omitempty"`
	Allowed     []string `json:"allowed,omitempty"`
	Expressions bool     `json:"expressions,omitempty"`
	Sensitive   bool     `json:"sensitive,omitempty"`
}

type processorDoc struct {
	Type          string                   `json:"type"`
	Summary       string                   `json:"summary"`
	Description   string                   `json:"description,omitempty"`
	Input         string                   `json:"input"`
	BuiltIn       bool                     `json:"built_in"`
	BuildTag      string                   `json:"build_tag,omitempty"`
	Properties    []propertyDoc            `json:"properties"`
	Relationships []edgeagent.Relationship `json:"relationships"`
	Dynamic       string                   `json:"dynamic_properties,omitempty"`
}

func docs(reg *edgeagent.Registry) []processorDoc {
	var out []processorDoc
	for _, s := range reg.Specs() {
		d := processorDoc{Type: s.Type, Summary: s.Summary, Description: s.Description, BuiltIn: s.Available(), BuildTag: s.BuildTag,
			Input:         map[edgeagent.InputRequirement]string{edgeagent.InputAllowed: "allowed", edgeagent.InputRequired: "required", edgeagent.InputForbidden: "none (source)"}[s.Input],
			Relationships: s.Relationships, Properties: []propertyDoc{}}
		for _, p := range s.Properties {
			d.Properties = append(d.Properties, propertyDoc{Name: p.Name, Description: p.Description, Kind: p.Kind.String(), Required: p.Required,
				Default: p.Default, Allowed: p.Allowed, Expressions: p.Expressions, Sensitive: p.Sensitive})
		}
		if s.Dynamic != nil {
			d.Dynamic = s.Dynamic.Description
		}
		out = append(out, d)
	}
	return out
}

func cmdProcessors(args []string, reg *edgeagent.Registry, stdout io.Writer) error {
	fs := newFlagSet("processors")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	ds := docs(reg)
	if *asJSON {
		return printJSON(stdout, ds)
	}
	for _, d := range ds {
		fmt.Fprintf(stdout, "%s — %s\n", d.Type, d.Summary)
		if !d.BuiltIn {
			fmt.Fprintf(stdout, "  (not built into this binary: build with -tags %s)\n", d.BuildTag)
		}
		fmt.Fprintf(stdout, "  input: %s\n", d.Input)
		if len(d.Properties) > 0 {
			fmt.Fprintln(stdout, "  properties:")
		}
		for _, p := range d.Properties {
			var notes []string
			notes = append(notes, p.Kind)
			if p.Required {
				notes = append(notes, "required")
			}
			if p.Default != "" {
				notes = append(notes, "default "+p.Default)
			}
			if len(p.Allowed) > 0 {
				notes = append(notes, "one of "+strings.Join(p.Allowed, "|"))
			}
			if p.Expressions {
				notes = append(notes, "supports ${...}")
			}
			if p.Sensitive {
				notes = append(notes, "sensitive")
			}
			fmt.Fprintf(stdout, "    %s (%s): %s\n", p.Name, strings.Join(notes, ", "), p.Description)
		}
		if d.Dynamic != "" {
			fmt.Fprintf(stdout, "  dynamic properties: %s\n", d.Dynamic)
		}
		fmt.Fprintln(stdout, "  relationships:")
		for _, r := range d.Relationships {
			fmt.Fprintf(stdout, "    %s: %s\n", r.Name, r.Description)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// location says where to read queues and provenance: the data directory,
// and the agent's HTTP address to ask when an agent holds the file.
type location struct {
	dataDir, http string
}

func locate(fs *flag.FlagSet, args []string, reg *edgeagent.Registry) (location, error) {
	dataDir := fs.String("data-dir", "", "the agent's data directory")
	cfg := fs.String("config", "", "the agent's flow file (for its data_dir and http address)")
	if err := fs.Parse(args); err != nil {
		return location{}, usageError{err}
	}
	switch {
	case *cfg != "":
		flow, err := config.Load(*cfg, reg)
		if err != nil {
			return location{}, err
		}
		return location{dataDir: flow.Agent.DataDir, http: flow.Agent.HTTP}, nil
	case *dataDir != "":
		return location{dataDir: *dataDir}, nil
	}
	return location{}, usageError{errors.New("--data-dir DIR or --config FILE is required")}
}

// openOrAsk opens the repository read-only; when a running agent holds it,
// it fetches path from the agent's HTTP API into v instead.
func (l location) openOrAsk(path string, v any) (*buffer.Repo, error) {
	repo, err := buffer.Open(l.dataDir, buffer.Options{ReadOnly: true})
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, edgeagent.ErrRepositoryLocked) {
		return nil, err
	}
	if l.http == "" {
		return nil, fmt.Errorf("an agent is running on %s and holds its data file: pass --config with the agent's flow (its agent.http serves this view), or query http://<agent.http>%s", l.dataDir, path)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + l.http + path)
	if err != nil {
		return nil, fmt.Errorf("asking the running agent at %s: %w", l.http, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("asking the running agent at %s: %s: %s", l.http, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil, json.NewDecoder(resp.Body).Decode(v)
}

func cmdQueues(args []string, reg *edgeagent.Registry, stdout io.Writer) error {
	fs := newFlagSet("queues")
	asJSON := fs.Bool("json", false, "print JSON")
	loc, err := locate(fs, args, reg)
	if err != nil {
		return err
	}
	var qs []engine.QueueStatus
	repo, err := loc.openOrAsk("/api/queues", &qs)
	if err != nil {
		return err
	}
	if repo != nil {
		defer repo.Close()
		if qs, err = engine.RepositoryQueues(repo); err != nil {
			return err
		}
	}
	if *asJSON {
		if qs == nil {
			qs = []engine.QueueStatus{}
		}
		return printJSON(stdout, qs)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTION\tCOUNT\tBYTES\tOLDEST\tBACKPRESSURE\tPRIORITIZER")
	for _, q := range qs {
		age := "-"
		if q.Count > 0 {
			age = (time.Duration(q.OldestAgeSecs * float64(time.Second))).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\t%s\n", q.Name, q.Count, edgeagent.FormatSize(q.Bytes), age, q.Full, q.Prioritizer)
	}
	return tw.Flush()
}

func cmdProvenance(args []string, reg *edgeagent.Registry, stdout io.Writer) error {
	fs := newFlagSet("provenance")
	asJSON := fs.Bool("json", false, "print JSON")
	ffID := fs.String("flowfile", "", "show the lineage (ancestors and descendants) of this flowfile ID")
	since := fs.String("since", "", "show events newer than this duration ago (e.g. 10m)")
	limit := fs.String("limit", "100", "at most this many events (newest)")
	loc, err := locate(fs, args, reg)
	if err != nil {
		return err
	}
	q, err := engine.ParseProvenanceQuery(*ffID, *since, *limit)
	if err != nil {
		return usageError{err}
	}
	var res *engine.ProvenanceResult
	path := fmt.Sprintf("/api/provenance?flowfile=%s&since=%s&limit=%s", *ffID, *since, *limit)
	repo, err := loc.openOrAsk(path, &res)
	if err != nil {
		return err
	}
	if repo != nil {
		defer repo.Close()
		if res, err = engine.QueryProvenance(repo, q); err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tTYPE\tFLOWFILE\tCOMPONENT\tDETAILS")
	for _, e := range res.Events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Type, e.FlowFileID, e.Component, eventDetails(e))
	}
	return tw.Flush()
}

func eventDetails(e provenance.Event) string {
	var parts []string
	if e.Relationship != "" {
		parts = append(parts, "rel="+e.Relationship)
	}
	if e.TransitURI != "" {
		parts = append(parts, "uri="+e.TransitURI)
	}
	if len(e.Parents) > 0 {
		parts = append(parts, fmt.Sprintf("parents=%d", len(e.Parents)))
	}
	if len(e.Children) > 0 {
		parts = append(parts, fmt.Sprintf("children=%d", len(e.Children)))
	}
	if e.Details != "" {
		parts = append(parts, e.Details)
	}
	return strings.Join(parts, " ")
}

func cmdVersion(reg *edgeagent.Registry, stdout io.Writer) error {
	tags := strings.Join(buildTags(), ",")
	if tags == "" {
		tags = "(none)"
	}
	var built, missing []string
	for _, s := range reg.Specs() {
		if s.Available() {
			built = append(built, s.Type)
		} else {
			missing = append(missing, fmt.Sprintf("%s (needs -tags %s)", s.Type, s.BuildTag))
		}
	}
	fmt.Fprintf(stdout, "edgeagent %s\ncommit: %s\ngo: %s %s/%s\nbuild tags: %s\nrepository format: %d\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, tags, buffer.FormatVersion)
	fmt.Fprintf(stdout, "processors: %s\n", strings.Join(built, ", "))
	if len(missing) > 0 {
		slices.Sort(missing)
		fmt.Fprintf(stdout, "not built in: %s\n", strings.Join(missing, ", "))
	}
	return nil
}
