package processors

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"edgeagent.dev"
)

// GenerateFlowFileSpec returns the spec of GenerateFlowFile, a source that
// creates flowfiles with random or custom content, for testing flows and
// load.
func GenerateFlowFileSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "GenerateFlowFile",
		Summary: "Creates flowfiles with random or custom content, for testing and load generation.",
		Description: "Creates batch_size flowfiles each time it runs. The content is custom_text when set " +
			"(evaluated once per run; file_size is then ignored), otherwise file_size bytes of random " +
			"printable text or random binary data. Unless unique_flowfiles is true, the random content is " +
			"generated once and shared by every flowfile. Each flowfile gets filename (its uuid) and mime.type.",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "file_size", Description: "The size of the content when custom_text is not set.", Kind: edgeagent.KindSize, Default: "0B"},
			{Name: "batch_size", Description: "The number of flowfiles created each time the processor runs.", Kind: edgeagent.KindInt, Default: "1", Validate: atLeast(1)},
			{Name: "data_format", Description: "text: random printable ASCII characters; binary: random bytes.", Kind: edgeagent.KindEnum, Allowed: []string{"text", "binary"}, Default: "text"},
			{Name: "custom_text", Description: "When set, the content of every flowfile (expressions evaluated once per run); file_size and data_format are ignored.", Expressions: true},
			{Name: "unique_flowfiles", Description: "true: new random content for every flowfile; false: random content generated once and reused.", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "mime_type", Description: "The mime.type attribute; default text/plain for text and custom_text, application/octet-stream for binary."},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		DefaultPeriod: time.Second,
		New:           newGenerateFlowFile,
	}
}

// textAlphabet has 64 printable characters, so a random byte masked with 63
// picks one without bias.
const textAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

type generateFlowFile struct {
	size       int64
	batch      int
	binary     bool
	customText edgeagent.PropertyValue
	unique     bool
	mimeType   string
	// shared is the content reused by every flowfile when unique is false
	// and custom_text is not set; generated on first use.
	shared func() ([]byte, error)
}

func newGenerateFlowFile(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &generateFlowFile{customText: cfg.Property("custom_text")}
	var err error
	if p.size, err = cfg.Property("file_size").Size(); err != nil {
		return nil, fmt.Errorf("property file_size: %w", err)
	}
	n, err := intProp(cfg, "batch_size", 1)
	if err != nil {
		return nil, err
	}
	p.batch = int(n)
	switch f := cfg.Property("data_format").String(); f {
	case "text":
	case "binary":
		p.binary = true
	default:
		return nil, fmt.Errorf("property data_format: %q is not one of text, binary", f)
	}
	if p.unique, err = boolProp(cfg, "unique_flowfiles"); err != nil {
		return nil, err
	}
	p.mimeType = cfg.Property("mime_type").String()
	if p.mimeType == "" {
		p.mimeType = "text/plain"
		if p.binary && p.customText.String() == "" {
			p.mimeType = "application/octet-stream"
		}
	}
	p.shared = sync.OnceValues(p.generate)
	return p, nil
}

// generate returns size bytes of random content in the configured format.
func (p *generateFlowFile) generate() ([]byte, error) {
	b := make([]byte, p.size)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generating random content: %w", err)
	}
	if !p.binary {
		for i, c := range b {
			b[i] = textAlphabet[c&63]
		}
	}
	return b, nil
}

func (p *generateFlowFile) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	var content []byte
	var err error
	switch {
	case p.customText.String() != "":
		text, err := p.customText.Evaluate(nil)
		if err != nil {
			return fmt.Errorf("evaluating custom_text: %w", err)
		}
		content = []byte(text)
	case !p.unique:
		if content, err = p.shared(); err != nil {
			return err
		}
	}
	for range p.batch {
		if content == nil || p.unique && p.customText.String() == "" {
			if content, err = p.generate(); err != nil {
				return err
			}
		}
		ff := s.Create()
		ff = s.PutAttributes(ff, map[string]string{
			edgeagent.AttrFilename: ff.ID.String(),
			edgeagent.AttrMimeType: p.mimeType,
		})
		if len(content) > 0 {
			ff = s.Write(ff, content)
		}
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	return nil
}
