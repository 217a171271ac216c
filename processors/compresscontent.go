package processors

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"

	"edgeagent.dev"
)

// compressBatch is how many flowfiles CompressContent takes in one session:
// compression is CPU bound, so a small batch keeps sessions short.
const compressBatch = 10

// Compression formats and their media types and filename extensions.
const (
	formatGzip        = "gzip"
	formatZstd        = "zstd"
	formatUseMimeType = "use_mime_type"
	mimeGzip          = "application/gzip"
	mimeZstd          = "application/zstd"
)

// CompressContentSpec returns the spec of CompressContent, which compresses
// or decompresses flowfile content with gzip or zstd.
func CompressContentSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "CompressContent",
		Summary: "Compresses or decompresses flowfile content with gzip or zstd.",
		Description: "Streams each flowfile's content through a gzip or zstd encoder (mode compress) or decoder " +
			"(mode decompress). Compressing sets mime.type to application/gzip or application/zstd and, with " +
			"update_filename, appends .gz or .zst to filename. Decompressing removes that extension and sets " +
			"mime.type from the remaining extension when it tells one, or removes mime.type. With " +
			"compression_format use_mime_type (decompress only) the format comes from the mime.type attribute: " +
			"a flowfile without one goes to failure, one with a type that is not a compression format goes to " +
			"success unchanged (as in NiFi). Content that does not decompress goes to failure.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "mode", Description: "compress or decompress.", Kind: edgeagent.KindEnum, Allowed: []string{"compress", "decompress"}, Default: "compress"},
			{Name: "compression_format", Description: "gzip, zstd, or use_mime_type (decompress only: the format comes from mime.type).", Kind: edgeagent.KindEnum, Allowed: []string{formatGzip, formatZstd, formatUseMimeType}, Default: formatGzip},
			{Name: "compression_level", Description: "gzip: 1 (fastest) to 9 (smallest), default 6; zstd: 1 (fastest) to 4 (smallest), default 2.", Kind: edgeagent.KindInt},
			{Name: "update_filename", Description: "Whether to add (compress) or remove (decompress) the .gz or .zst extension of filename.", Kind: edgeagent.KindBool, Default: "true"},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		New:           newCompressContent,
	}
}

type compressContent struct {
	compress       bool
	format         string
	level          int // 0: the format's default
	updateFilename bool
}

func newCompressContent(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &compressContent{format: cfg.Property("compression_format").String()}
	switch m := cfg.Property("mode").String(); m {
	case "compress":
		p.compress = true
	case "decompress":
	default:
		return nil, fmt.Errorf("property mode: %q is not one of compress, decompress", m)
	}
	switch p.format {
	case formatGzip, formatZstd:
	case formatUseMimeType:
		if p.compress {
			return nil, errors.New("property compression_format: use_mime_type works only with mode decompress")
		}
	default:
		return nil, fmt.Errorf("property compression_format: %q is not one of gzip, zstd, use_mime_type", p.format)
	}
	if cfg.Property("compression_level").String() != "" && p.compress {
		n, err := intProp(cfg, "compression_level", 1)
		if err != nil {
			return nil, err
		}
		max := int64(9)
		if p.format == formatZstd {
			max = 4
		}
		if n > max {
			return nil, fmt.Errorf("property compression_level: %s levels go from 1 to %d", p.format, max)
		}
		p.level = int(n)
	}
	var err error
	if p.updateFilename, err = boolProp(cfg, "update_filename"); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *compressContent) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(compressBatch)
	if len(batch) == 0 {
		return nil
	}
	for i, ff := range batch {
		if stopping(ctx, s, batch[i:]) {
			break
		}
		format := p.format
		if format == formatUseMimeType {
			mt, ok := ff.Lookup(edgeagent.AttrMimeType)
			if !ok {
				routeToFailure(s, ff, errors.New("decompressing: no mime.type attribute to tell the compression format"))
				continue
			}
			if format = formatOfMimeType(mt); format == "" {
				pc.Logger().Info("mime.type is not a compression format; passing the flowfile on unchanged", "flowfile", ff.ID, "mime.type", mt)
				s.Transfer(ff, edgeagent.RelSuccess)
				continue
			}
		}
		out, err := p.transform(s, ff, format)
		if err != nil {
			routeToFailure(s, out, err)
			continue
		}
		s.Transfer(out, edgeagent.RelSuccess)
	}
	return nil
}

func formatOfMimeType(mt string) string {
	mt, _, _ = strings.Cut(mt, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case mimeGzip, "application/x-gzip":
		return formatGzip
	case mimeZstd, "application/x-zstd":
		return formatZstd
	}
	return ""
}

func extension(format string) string {
	if format == formatGzip {
		return ".gz"
	}
	return ".zst"
}

// transform replaces ff's content with its compressed or decompressed form
// and updates mime.type and filename. On error it returns the flowfile to
// route to failure.
func (p *compressContent) transform(s edgeagent.ProcessSession, ff *edgeagent.FlowFile, format string) (*edgeagent.FlowFile, error) {
	src, err := s.Read(ff)
	if err != nil {
		return ff, fmt.Errorf("reading content: %w", err)
	}
	defer src.Close()
	var r io.Reader
	if p.compress {
		enc := &encodingReader{src: src, chunk: make([]byte, 64<<10)}
		if enc.enc, err = p.newEncoder(&enc.buf, format); err != nil {
			return ff, err
		}
		defer enc.Close()
		r = enc
	} else {
		dec, err := newDecoder(src, format)
		if err != nil {
			return ff, fmt.Errorf("decompressing %s: %w", format, err)
		}
		defer dec.Close()
		r = dec
	}
	nff, err := s.WriteFrom(ff, r)
	ff = latest(nff, ff)
	if err != nil {
		return ff, fmt.Errorf("%s %s: %w", p.verb(), format, err)
	}
	s.Provenance().ModifyContent(ff, p.verb()+" "+format)
	attrs := p.attributes(ff, format)
	if attrs[edgeagent.AttrMimeType] == "" {
		delete(attrs, edgeagent.AttrMimeType)
		if _, ok := ff.Lookup(edgeagent.AttrMimeType); ok {
			ff = s.RemoveAttribute(ff, edgeagent.AttrMimeType)
		}
	}
	if len(attrs) > 0 {
		ff = s.PutAttributes(ff, attrs)
	}
	return ff, nil
}

func (p *compressContent) verb() string {
	if p.compress {
		return "compressing"
	}
	return "decompressing"
}

// attributes returns the mime.type and filename after transforming; an
// empty mime.type means it is to be removed.
func (p *compressContent) attributes(ff *edgeagent.FlowFile, format string) map[string]string {
	attrs := map[string]string{}
	name, hasName := ff.Lookup(edgeagent.AttrFilename)
	ext := extension(format)
	if p.compress {
		attrs[edgeagent.AttrMimeType] = mimeZstd
		if format == formatGzip {
			attrs[edgeagent.AttrMimeType] = mimeGzip
		}
		if p.updateFilename && hasName {
			attrs[edgeagent.AttrFilename] = name + ext
		}
		return attrs
	}
	if p.updateFilename && hasName && len(name) > len(ext) && strings.EqualFold(name[len(name)-len(ext):], ext) {
		name = name[:len(name)-len(ext)]
		attrs[edgeagent.AttrFilename] = name
	}
	attrs[edgeagent.AttrMimeType] = mimeTypeByExtension(name)
	return attrs
}

func (p *compressContent) newEncoder(w io.Writer, format string) (io.WriteCloser, error) {
	if format == formatGzip {
		level := p.level
		if level == 0 {
			level = gzip.DefaultCompression
		}
		return gzip.NewWriterLevel(w, level)
	}
	level := zstd.SpeedDefault
	if p.level != 0 {
		level = zstd.EncoderLevel(p.level)
	}
	return zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
}

// decoder is a decompressing reader that must be closed.
type decoder interface {
	io.Reader
	Close()
}

type gzipDecoder struct{ *gzip.Reader }

func (d gzipDecoder) Close() { d.Reader.Close() }

func newDecoder(r io.Reader, format string) (decoder, error) {
	if format == formatGzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return gzipDecoder{zr}, nil
	}
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
}

// encodingReader compresses src as it is read: each Read pulls a chunk from
// src through the encoder into buf, so content streams through one goroutine
// with a buffer of about one compressed block.
type encodingReader struct {
	src   io.Reader
	enc   io.WriteCloser // writes into buf
	buf   bytes.Buffer
	chunk []byte
	done  bool  // src is exhausted and enc closed
	err   error // a read or encoding error, returned once buf is drained
}

func (r *encodingReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		n, err := r.src.Read(r.chunk)
		if n > 0 {
			if _, werr := r.enc.Write(r.chunk[:n]); werr != nil {
				r.err = werr
				continue
			}
		}
		switch {
		case err == io.EOF:
			r.done = true
			r.err = r.enc.Close()
		case err != nil:
			r.err = err
		}
	}
	return r.buf.Read(p)
}

// Close releases the encoder when the content was not read to its end.
func (r *encodingReader) Close() {
	if !r.done {
		r.done = true
		r.enc.Close()
	}
}
