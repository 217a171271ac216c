package processors

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"edgeagent.dev"
)

// MergeContent's relationships (besides original and failure).
var relMerged = edgeagent.Relationship{Name: "merged", Description: "The merged flowfiles."}

// MergeContentSpec returns the spec of MergeContent, which concatenates the
// content of several flowfiles into one.
func MergeContentSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "MergeContent",
		Summary: "Merges groups (bins) of flowfiles into one flowfile by binary concatenation.",
		Description: "Each run takes up to 4 x max_entries queued flowfiles and groups them, in queue order, into bins " +
			"(one series of bins per value of correlation_attribute when it is set) of at most max_entries " +
			"flowfiles and max_size bytes. A bin is merged when it holds at least min_entries flowfiles and " +
			"min_size bytes, when it is full (or the next flowfile does not fit), or when its oldest flowfile " +
			"entered the agent more than max_bin_age ago. The flowfiles of bins that are not ready stay in their " +
			"queue, in place, for a later run: bins live in the durable queue, not in memory, so flowfiles " +
			"beyond the first 4 x max_entries are binned only once earlier ones are merged. " +
			"The only merge format is binary_concatenation: header, then the contents separated by demarcator, " +
			"then footer (\\n, \\r, \\t and \\\\ are interpreted in all three). The merged flowfile keeps the " +
			"attributes all its parents share and gets merge.count, merge.bin_age (milliseconds) and a JOIN " +
			"provenance event; the inputs go to original.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "merge_format", Description: "How contents are merged; binary_concatenation is the only format.", Kind: edgeagent.KindEnum, Allowed: []string{"binary_concatenation"}, Default: "binary_concatenation"},
			{Name: "min_entries", Description: "The fewest flowfiles a bin needs to be merged (unless it is full or too old).", Kind: edgeagent.KindInt, Default: "1", Validate: atLeast(1)},
			{Name: "max_entries", Description: "The most flowfiles in one bin.", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
			{Name: "min_size", Description: "The least content a bin needs to be merged (unless it is full or too old).", Kind: edgeagent.KindSize, Default: "0B"},
			{Name: "max_size", Description: "The most content in one bin (a single larger flowfile gets a bin of its own).", Kind: edgeagent.KindSize},
			{Name: "max_bin_age", Description: "A bin whose oldest flowfile entered the agent longer ago than this is merged even if it is below the minimums.", Kind: edgeagent.KindDuration},
			{Name: "correlation_attribute", Description: "When set, only flowfiles with the same value of this attribute are merged together."},
			{Name: "header", Description: "Text put at the start of the merged content."},
			{Name: "footer", Description: "Text put at the end of the merged content."},
			{Name: "demarcator", Description: "Text put between the merged contents."},
		},
		Relationships: []edgeagent.Relationship{relMerged, edgeagent.RelOriginal, edgeagent.RelFailure},
		New:           newMergeContent,
	}
}

type mergeContent struct {
	minEntries, maxEntries int
	minSize, maxSize       int64         // maxSize -1: no limit
	maxAge                 time.Duration // -1: no limit
	corrAttr               string
	header, footer, demarc []byte
}

func newMergeContent(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &mergeContent{
		corrAttr: cfg.Property("correlation_attribute").String(),
		header:   []byte(unescape(cfg.Property("header").String())),
		footer:   []byte(unescape(cfg.Property("footer").String())),
		demarc:   []byte(unescape(cfg.Property("demarcator").String())),
	}
	if f := cfg.Property("merge_format").String(); f != "binary_concatenation" {
		return nil, fmt.Errorf("property merge_format: %q is not supported (binary_concatenation only)", f)
	}
	n, err := intProp(cfg, "min_entries", 1)
	if err != nil {
		return nil, err
	}
	p.minEntries = int(n)
	if n, err = intProp(cfg, "max_entries", 1); err != nil {
		return nil, err
	}
	p.maxEntries = int(n)
	if p.minEntries > p.maxEntries {
		return nil, fmt.Errorf("property min_entries: %d is more than max_entries (%d)", p.minEntries, p.maxEntries)
	}
	if p.minSize, err = cfg.Property("min_size").Size(); err != nil {
		return nil, fmt.Errorf("property min_size: %w", err)
	}
	if p.maxSize, err = optionalSize(cfg, "max_size"); err != nil {
		return nil, err
	}
	if p.maxSize >= 0 && p.minSize > p.maxSize {
		return nil, fmt.Errorf("property min_size: %d bytes is more than max_size (%d bytes)", p.minSize, p.maxSize)
	}
	if p.maxAge, err = optionalDuration(cfg, "max_bin_age"); err != nil {
		return nil, err
	}
	return p, nil
}

// bin is a group of flowfiles to merge into one.
type bin struct {
	ffs    []*edgeagent.FlowFile
	size   int64
	oldest time.Time
	full   bool // at max_entries or max_size, or the next flowfile did not fit
}

func (p *mergeContent) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(4 * p.maxEntries)
	if len(batch) == 0 {
		return nil
	}
	now := time.Now()
	merged := false
	for _, b := range p.binFlowFiles(batch) {
		if !p.ready(b, now) {
			for _, ff := range b.ffs {
				s.Return(ff)
			}
			continue
		}
		p.merge(s, b, now)
		merged = true
	}
	if !merged {
		pc.Yield()
	}
	return nil
}

// binFlowFiles groups batch into bins, in order of creation.
func (p *mergeContent) binFlowFiles(batch []*edgeagent.FlowFile) []*bin {
	var bins []*bin
	open := map[string]*bin{} // the bin still taking flowfiles, per correlation value
	for _, ff := range batch {
		var key string
		if p.corrAttr != "" {
			key = ff.Attr(p.corrAttr)
		}
		b := open[key]
		if b != nil && (len(b.ffs) >= p.maxEntries || p.maxSize >= 0 && b.size+ff.Size > p.maxSize) {
			b.full = true
			b = nil
		}
		if b == nil {
			b = &bin{oldest: ff.EntryTime}
			bins = append(bins, b)
			open[key] = b
		}
		b.ffs = append(b.ffs, ff)
		b.size += ff.Size
		if ff.EntryTime.Before(b.oldest) {
			b.oldest = ff.EntryTime
		}
		if len(b.ffs) >= p.maxEntries || p.maxSize >= 0 && b.size >= p.maxSize {
			b.full = true
			delete(open, key)
		}
	}
	return bins
}

func (p *mergeContent) ready(b *bin, now time.Time) bool {
	return b.full ||
		len(b.ffs) >= p.minEntries && b.size >= p.minSize ||
		p.maxAge >= 0 && now.Sub(b.oldest) >= p.maxAge
}

// merge creates the merged flowfile of b and routes it and its parents.
func (p *mergeContent) merge(s edgeagent.ProcessSession, b *bin, now time.Time) {
	child := s.CreateChild(b.ffs...) // keeps the attributes all parents share (mime.type among them)
	attrs := map[string]string{
		"merge.count":   strconv.Itoa(len(b.ffs)),
		"merge.bin_age": strconv.FormatInt(now.Sub(b.oldest).Milliseconds(), 10),
	}
	if len(b.ffs) > 1 {
		attrs[edgeagent.AttrFilename] = child.ID.String()
	}
	child = s.PutAttributes(child, attrs)
	r := &binReader{s: s, segments: p.segments(b.ffs)}
	nchild, err := s.WriteFrom(child, r)
	child = latest(nchild, child)
	r.Close()
	if err != nil {
		s.Remove(child)
		err = fmt.Errorf("merging %d flowfiles: %w", len(b.ffs), err)
		for _, ff := range b.ffs {
			routeToFailure(s, ff, err)
		}
		return
	}
	s.Transfer(child, relMerged)
	for _, ff := range b.ffs {
		s.Transfer(ff, edgeagent.RelOriginal)
	}
}

// segment is a piece of merged content: literal bytes or a flowfile's content.
type segment struct {
	b  []byte
	ff *edgeagent.FlowFile
}

// segments lists header, contents with demarcators and footer.
func (p *mergeContent) segments(ffs []*edgeagent.FlowFile) []segment {
	segs := make([]segment, 0, 2*len(ffs)+1)
	if len(p.header) > 0 {
		segs = append(segs, segment{b: p.header})
	}
	for i, ff := range ffs {
		if i > 0 && len(p.demarc) > 0 {
			segs = append(segs, segment{b: p.demarc})
		}
		if ff.Size > 0 {
			segs = append(segs, segment{ff: ff})
		}
	}
	if len(p.footer) > 0 {
		segs = append(segs, segment{b: p.footer})
	}
	return segs
}

// binReader reads segments one after the other, opening each flowfile's
// content only when it is reached and closing it at its end, so a bin of a
// thousand flowfiles holds one content reader open at a time.
type binReader struct {
	s        edgeagent.ProcessSession
	segments []segment
	rc       io.ReadCloser // the open content of segments[0]
}

func (r *binReader) Read(p []byte) (int, error) {
	for len(r.segments) > 0 {
		seg := &r.segments[0]
		if seg.ff == nil {
			if len(seg.b) == 0 {
				r.segments = r.segments[1:]
				continue
			}
			n := copy(p, seg.b)
			seg.b = seg.b[n:]
			return n, nil
		}
		if r.rc == nil {
			rc, err := r.s.Read(seg.ff)
			if err != nil {
				return 0, fmt.Errorf("reading content of %s: %w", seg.ff.ID, err)
			}
			r.rc = rc
		}
		n, err := r.rc.Read(p)
		if err != io.EOF {
			return n, err
		}
		r.Close()
		r.segments = r.segments[1:]
		if n > 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// Close closes the content reader in use, if any.
func (r *binReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
