package processors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"

	"edgeagent.dev"
)

// maxLoggedPayload is how much content LogAttribute logs with log_payload.
const maxLoggedPayload = 1024

// LogAttributeSpec returns the spec of LogAttribute, which logs the
// attributes (and optionally the content) of flowfiles.
func LogAttributeSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "LogAttribute",
		Summary: "Logs each flowfile's attributes, and optionally the start of its content, as one structured record.",
		Description: "Writes one log record per flowfile at log_level, with the uuid, the content size and the " +
			"attributes selected by attributes_to_log and not matched by attributes_to_ignore (whole-name regular " +
			"expression matches), sorted by name. With log_payload the first 1 KiB of the content is logged as " +
			"text. Flowfiles are then transferred to success unchanged.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "log_level", Description: "The level of the records.", Kind: edgeagent.KindEnum, Allowed: []string{"debug", "info", "warn", "error"}, Default: "info"},
			{Name: "log_payload", Description: "Whether to log the content (at most 1 KiB of it, as text).", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "attributes_to_log", Description: "Regular expression: the attributes to log.", Kind: edgeagent.KindRegex, Default: ".*"},
			{Name: "attributes_to_ignore", Description: "Regular expression: attributes not to log, even when attributes_to_log matches them.", Kind: edgeagent.KindRegex},
			{Name: "log_prefix", Description: "Text put in front of the log message, to tell several LogAttribute processors apart."},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           newLogAttribute,
	}
}

type logAttribute struct {
	level   slog.Level
	payload bool
	include *regexp.Regexp // nil: every attribute
	exclude *regexp.Regexp // nil: none
	msg     string
}

func newLogAttribute(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &logAttribute{msg: "flowfile attributes"}
	switch l := cfg.Property("log_level").String(); l {
	case "debug":
		p.level = slog.LevelDebug
	case "info":
		p.level = slog.LevelInfo
	case "warn":
		p.level = slog.LevelWarn
	case "error":
		p.level = slog.LevelError
	default:
		return nil, fmt.Errorf("property log_level: %q is not one of debug, info, warn, error", l)
	}
	var err error
	if p.payload, err = boolProp(cfg, "log_payload"); err != nil {
		return nil, err
	}
	if p.include, err = optionalRegex(cfg, "attributes_to_log"); err != nil {
		return nil, err
	}
	if p.exclude, err = optionalRegex(cfg, "attributes_to_ignore"); err != nil {
		return nil, err
	}
	if prefix := cfg.Property("log_prefix").String(); prefix != "" {
		p.msg = prefix + " " + p.msg
	}
	return p, nil
}

func (p *logAttribute) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(batchSize)
	if len(batch) == 0 {
		return nil
	}
	log := pc.Logger()
	if log.Enabled(ctx, p.level) {
		for _, ff := range batch {
			log.LogAttrs(ctx, p.level, p.msg, p.record(s, ff)...)
		}
	}
	for _, ff := range batch {
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	return nil
}

// record returns the log attributes for ff.
func (p *logAttribute) record(s edgeagent.ProcessSession, ff *edgeagent.FlowFile) []slog.Attr {
	attrs := make([]any, 0, len(ff.Attributes))
	for _, k := range slices.Sorted(maps.Keys(ff.Attributes)) {
		if (p.include == nil || p.include.MatchString(k)) && (p.exclude == nil || !p.exclude.MatchString(k)) {
			attrs = append(attrs, slog.String(k, ff.Attributes[k]))
		}
	}
	rec := []slog.Attr{
		slog.String(edgeagent.AttrUUID, ff.ID.String()),
		slog.Int64("size", ff.Size),
		slog.Group("attributes", attrs...),
	}
	if p.payload {
		text, err := readPrefix(s, ff, maxLoggedPayload)
		if err != nil {
			rec = append(rec, slog.String("payload_error", err.Error()))
		} else {
			rec = append(rec, slog.String("payload", text))
		}
	}
	return rec
}

// readPrefix returns up to n bytes of ff's content as valid UTF-8 text.
func readPrefix(s edgeagent.ProcessSession, ff *edgeagent.FlowFile, n int64) (string, error) {
	if ff.Size == 0 {
		return "", nil
	}
	r, err := s.Read(ff)
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return "", err
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}
