package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
)

var update = flag.Bool("update", false, "rewrite the golden .errors files")

// updateGolden reports whether the golden files are to be rewritten
// (go test -update, or UPDATE_GOLDEN=1).
func updateGolden() bool { return *update || os.Getenv("UPDATE_GOLDEN") == "1" }

type nopProcessor struct{}

func (nopProcessor) OnTrigger(context.Context, edgeagent.ProcessContext, edgeagent.ProcessSession) error {
	return nil
}

func newNop(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) { return nopProcessor{}, nil }

// testRegistry has fake specs covering what validation looks at: a source, a
// sink with required properties, dynamic properties with and without
// relationships, and a type known but not built in.
func testRegistry() *edgeagent.Registry {
	r := edgeagent.NewRegistry()
	r.MustRegister(
		edgeagent.ProcessorSpec{
			Type: "GenerateFlowFile", Input: edgeagent.InputForbidden, DefaultPeriod: time.Second,
			Properties: []edgeagent.PropertySpec{
				{Name: "file_size", Kind: edgeagent.KindSize, Default: "0B", Description: "content size"},
				{Name: "batch_size", Kind: edgeagent.KindInt, Default: "1", Description: "flowfiles per trigger"},
				{Name: "data", Expressions: true, Description: "content text"},
			},
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "PublishMQTT", Input: edgeagent.InputRequired,
			Properties: []edgeagent.PropertySpec{
				{Name: "broker", Required: true, Description: "the broker URL"},
				{Name: "topic", Required: true, Expressions: true, Description: "the topic"},
				{Name: "qos", Kind: edgeagent.KindEnum, Allowed: []string{"0", "1", "2"}, Default: "1"},
				{Name: "retain", Kind: edgeagent.KindBool, Default: "false"},
				{Name: "password", Sensitive: true},
			},
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "PutFile", Input: edgeagent.InputRequired,
			Properties: []edgeagent.PropertySpec{
				{Name: "directory", Required: true, Description: "where to write"},
			},
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "RouteOnAttribute", Input: edgeagent.InputRequired,
			Properties: []edgeagent.PropertySpec{
				{Name: "routing_strategy", Kind: edgeagent.KindEnum, Default: "route_to_property_name",
					Allowed: []string{"route_to_property_name", "route_all_match"}},
			},
			Relationships: []edgeagent.Relationship{{Name: "unmatched"}},
			Dynamic:       &edgeagent.DynamicSpec{Expressions: true, Relationships: true},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "UpdateAttribute", Input: edgeagent.InputRequired,
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
			Dynamic:       &edgeagent.DynamicSpec{Expressions: true},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "LogAttribute",
			Properties: []edgeagent.PropertySpec{
				{Name: "log_level", Kind: edgeagent.KindEnum, Allowed: []string{"debug", "info"}, Default: "info"},
			},
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
			New:           newNop,
		},
		edgeagent.ProcessorSpec{
			Type: "CaptureFrame", Input: edgeagent.InputForbidden, BuildTag: "gocv",
			Properties: []edgeagent.PropertySpec{
				{Name: "source", Required: true},
				{Name: "jpeg_quality", Kind: edgeagent.KindInt, Default: "90"},
			},
			Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		},
	)
	return r
}

func TestValidFlows(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := Load(file, testRegistry())
			require.NoError(t, err)
			require.Equal(t, file, f.File)
			require.Len(t, f.Hash, 64)
		})
	}
}

// TestInvalidFlows compares every problem reported for
// testdata/invalid/NAME.yaml with NAME.errors. Rewrite the .errors files
// with UPDATE_GOLDEN=1 go test ./internal/config (and read the diff).
func TestInvalidFlows(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 15)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := Load(file, testRegistry())
			require.Error(t, err)
			require.Nil(t, f)
			require.ErrorIs(t, err, edgeagent.ErrInvalidConfig)
			var errs edgeagent.ConfigErrors
			require.True(t, errors.As(err, &errs))
			for _, e := range errs {
				require.Equal(t, file, e.File)
				require.NotEmpty(t, e.Msg)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".errors"
			if updateGolden() {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run with UPDATE_GOLDEN=1")
			require.Equal(t, string(want), got)
		})
	}
}

func TestParseFull(t *testing.T) {
	f, err := Load("testdata/valid/full.yaml", testRegistry())
	require.NoError(t, err)

	require.Equal(t, Agent{
		ID: "jetson-01", DataDir: "/var/lib/edgeagent", HTTP: "127.0.0.1:9100",
		LogLevel: "debug", LogFormat: "json", ShutdownTimeout: 30 * time.Second,
		Repository: Repository{MaxSize: 2 << 30, MaxContentSize: 16 << 20},
		Provenance: Provenance{MaxAge: 7 * 24 * time.Hour, MaxSize: 256 << 20},
		Line:       3, Col: 3,
	}, f.Agent)

	require.Len(t, f.Processors, 5)
	frames := f.Processor("frames")
	require.Equal(t, "GenerateFlowFile", frames.Type)
	require.Equal(t, "GenerateFlowFile", frames.Spec.Type)
	require.Equal(t, Schedule{Period: 200 * time.Millisecond, Concurrency: 2, Yield: 5 * time.Second,
		Penalty: time.Minute, Batch: 10}, frames.Schedule)
	require.Equal(t, map[string]string{"file_size": "1KiB", "batch_size": "85", "data": "frame from ${agent.id}"},
		frames.Properties)
	require.Equal(t, 11, frames.Line)
	require.Equal(t, 5, frames.Col)

	tag := f.Processor("tag")
	require.Equal(t, []string{"camera", "flag", "ratio", "out.name"}, tag.Dynamic)
	require.Equal(t, "true", tag.Properties["flag"])
	require.Equal(t, "0.5", tag.Properties["ratio"])
	// defaults: no period in the spec, the engine's schedule defaults
	require.Equal(t, Schedule{Concurrency: 1, Batch: 1, Yield: time.Second, Penalty: 30 * time.Second}, tag.Schedule)
	require.Nil(t, f.Processor("nope"))

	route := f.Processor("route")
	require.Equal(t, []edgeagent.Relationship{
		{Name: "unmatched"},
		{Name: "large", Description: `Flowfiles routed by the dynamic property "large".`},
		{Name: "small", Description: `Flowfiles routed by the dynamic property "small".`},
	}, route.Relationships())
	require.Equal(t, []string{"unmatched"}, route.AutoTerminate)

	require.Len(t, f.Connections, 4)
	require.Equal(t, &Connection{Name: "frames/success/route", From: "frames", To: "route",
		Relationships: []string{"success"}, MaxCount: 200, MaxBytes: 64 << 20, ExpireAfter: 10 * time.Minute,
		Prioritizer: "newest_first", WhenFull: "drop_oldest", Line: 41, Col: 5}, f.Connections[0])
	require.Equal(t, &Connection{Name: "route/large+small/tag", From: "route", To: "tag",
		Relationships: []string{"large", "small"}, MaxCount: DefaultMaxCount, MaxBytes: DefaultMaxBytes,
		Prioritizer: "fifo", WhenFull: "backpressure", Line: 43, Col: 5}, f.Connections[1])
	require.Equal(t, "to-broker", f.Connections[2].Name)
}

func TestParseDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/edgeagent:/var/lib/other")
	f, err := Load("testdata/valid/minimal.yaml", testRegistry())
	require.NoError(t, err)
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, Agent{
		ID: host, DataDir: "/var/lib/edgeagent", LogLevel: "info", LogFormat: "text",
		ShutdownTimeout: 10 * time.Second,
		Repository:      Repository{MaxSize: 1 << 30, MaxContentSize: 64 << 20},
		Provenance:      Provenance{MaxAge: 24 * time.Hour, MaxSize: 100 << 20},
	}, f.Agent)
	require.Equal(t, Schedule{Period: time.Second, Concurrency: 1, Batch: 1, Yield: time.Second,
		Penalty: 30 * time.Second}, f.Processors[0].Schedule, "period defaults to the spec's DefaultPeriod")
	require.Empty(t, f.Connections)

	t.Setenv("STATE_DIRECTORY", "")
	f, err = Load("testdata/valid/minimal.yaml", testRegistry())
	require.NoError(t, err)
	require.Equal(t, "./data", f.Agent.DataDir)
}

func TestParseAnchors(t *testing.T) {
	f, err := Load("testdata/valid/anchors.yaml", testRegistry())
	require.NoError(t, err)
	require.Equal(t, 50*time.Millisecond, f.Processors[0].Schedule.Period)
	require.Equal(t, 1, f.Processors[0].Schedule.Concurrency, "a key beside <<: wins")
	require.Equal(t, 4, f.Processors[1].Schedule.Concurrency)
	require.Equal(t, "b", f.Connections[1].From)
	require.Equal(t, int64(50), f.Connections[1].MaxCount)
	require.Equal(t, "b/success/log", f.Connections[1].Name)
}

func TestHash(t *testing.T) {
	data := []byte("processors: []\n")
	f, err := Parse("x.yaml", data, nil)
	require.NoError(t, err)
	require.Equal(t, "x.yaml", f.File)
	sum := sha256.Sum256(data)
	require.Equal(t, hex.EncodeToString(sum[:]), f.Hash)
	g, err := Parse("x.yaml", append(data, '\n'), nil)
	require.NoError(t, err)
	require.NotEqual(t, f.Hash, g.Hash)
}

func TestProcessorConfig(t *testing.T) {
	f, err := Load("testdata/valid/full.yaml", testRegistry())
	require.NoError(t, err)
	env := edgeagent.ExprEnv{AgentID: f.Agent.ID, Hostname: "host"}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	cfg, err := f.ProcessorConfig(f.Processor("publish"), env, logger)
	require.NoError(t, err)
	require.Equal(t, "publish", cfg.Name)
	require.Equal(t, "PublishMQTT", cfg.Type)
	require.Equal(t, "jetson-01", cfg.AgentID)
	require.Equal(t, filepath.Join("/var/lib/edgeagent", "state", "publish"), cfg.StateDir)
	require.Len(t, cfg.Properties, 5, "every spec property, set or not")
	topic := cfg.Property("topic")
	require.True(t, topic.IsSet())
	require.True(t, topic.HasExpression())
	got, err := topic.Evaluate(nil)
	require.NoError(t, err)
	require.Equal(t, "edge/jetson-01/frames", got)
	require.Equal(t, "1", cfg.Property("qos").String())
	require.False(t, cfg.Property("password").IsSet())
	require.Equal(t, "", cfg.Property("password").String())
	require.Empty(t, cfg.Dynamic)

	cfg.Logger.Info("hello")
	require.Contains(t, logs.String(), "processor=publish type=PublishMQTT")

	cfg, err = f.ProcessorConfig(f.Processor("tag"), env, nil)
	require.NoError(t, err)
	require.Empty(t, cfg.Properties)
	require.Len(t, cfg.Dynamic, 4)
	require.Equal(t, "out.name", cfg.Dynamic[3].Name)
	v, err := cfg.Dynamic[3].Value.Evaluate(&edgeagent.FlowFile{Attributes: map[string]string{"filename": "a.jpg"}})
	require.NoError(t, err)
	require.Equal(t, "A.JPG", v)

	cfg, err = f.ProcessorConfig(f.Processor("frames"), env, nil)
	require.NoError(t, err)
	size, err := cfg.Property("file_size").Size()
	require.NoError(t, err)
	require.Equal(t, int64(1024), size)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.yaml", testRegistry())
	require.ErrorIs(t, err, os.ErrNotExist)
	require.False(t, errors.Is(err, edgeagent.ErrInvalidConfig))
}

// TestEveryCheckHasAGoldenCase guards the golden set: each kind of message
// appears in some .errors file.
func TestEveryCheckHasAGoldenCase(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.errors")
	require.NoError(t, err)
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all.Write(b)
	}
	for _, msg := range []string{
		"invalid YAML", "unknown key", "did you mean", "expected a list, got a mapping", "expected a mapping",
		"processor name cannot be empty", "duplicate processor name", "duplicate connection name",
		"unknown processor type", "is not built into this binary: rebuild with -tags gocv",
		"needs an incoming connection", "is a source and takes no incoming connections",
		"unknown processor", "has no relationship", "is neither connected nor auto-terminated",
		"auto_terminate names", "missing required property", "unknown property", "is not a duration",
		"is not a size", "must be at least 1", "is not one of", "agent id", "duplicate key",
		"has the name of a fixed relationship", "invalid expression",
	} {
		require.Contains(t, all.String(), msg)
	}
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		require.NoError(f, err)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(b)
		}
	}
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, data []byte) {
		flow, err := Parse("fuzz.yaml", data, reg)
		if err == nil {
			require.NotNil(t, flow)
			for _, p := range flow.Processors {
				_, err := flow.ProcessorConfig(p, edgeagent.ExprEnv{}, nil)
				require.NoError(t, err)
			}
			return
		}
		require.Nil(t, flow)
		var errs edgeagent.ConfigErrors
		require.True(t, errors.As(err, &errs), "%T: %v", err, err)
		require.NotEmpty(t, errs)
		for _, e := range errs {
			require.Equal(t, "fuzz.yaml", e.File)
			if e.Line < 1 {
				// only a YAML syntax error without a line in its message has no position
				require.True(t, strings.HasPrefix(e.Msg, "invalid YAML: ") && !strings.Contains(e.Msg, "line "),
					fmt.Sprintf("no position: %v", e))
			}
		}
	})
}

func TestSyntaxErrorLines(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"processors:\n  - name: a\n    type: b\n   x: 1\n", "f.yaml:4:0: invalid YAML: did not find expected '-' indicator"},
		{"a: 'open\nb: 1\n", "f.yaml:1:0: invalid YAML: found unexpected end of stream"},
		{"processors:\n  - {name: a,\n\n  type: b\n", "f.yaml:4:0: invalid YAML: did not find expected ',' or '}'"},
		{"a: b\n  c: d\n", "f.yaml:2:0: invalid YAML: mapping values are not allowed in this context"},
		{"!\"00", "f.yaml:1:0: invalid YAML: did not find expected whitespace or line break"},
		{"a: *nope\n", "f.yaml:1:0: invalid YAML: unknown anchor 'nope' referenced"},
		{"---\n", "f.yaml:1:1: the flow file is empty: it needs at least a processors section"},
		{"", "f.yaml:1:1: the flow file is empty: it needs at least a processors section"},
	}
	for _, tt := range tests {
		_, err := Parse("f.yaml", []byte(tt.yaml), testRegistry())
		require.EqualError(t, err, tt.want, tt.yaml)
	}
}

func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-a0: &a0 {period: 1s}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "x-a%d: &a%d {<<: [*a%d, *a%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("processors:\n  - {name: g, type: GenerateFlowFile, auto_terminate: [success], schedule: *a40}\n")
	_, err := Parse("b.yaml", []byte(b.String()), testRegistry())
	require.ErrorContains(t, err, "too many merges (<<)")
}
