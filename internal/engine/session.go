package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/provenance"
)

type ffKind uint8

const (
	kindInput ffKind = iota
	kindCreated
	kindChild
	kindClone
)

type ffAction uint8

const (
	actNone ffAction = iota
	actTransfer
	actRemove
	actReturn
)

// ffState is the session's record of one flowfile it got or made.
type ffState struct {
	cur       *edgeagent.FlowFile
	orig      *edgeagent.FlowFile // inputs: as polled
	item      *buffer.Item        // inputs only
	kind      ffKind
	action    ffAction
	rel       string
	penalized bool
	// what the processor reported explicitly, to suppress inferred events
	reportedOrigin  bool // RECEIVE or FETCH
	reportedContent bool
	reportedAttrs   bool
	contentChanged  bool
}

// transient reports whether the flowfile was made and removed in the same
// session: it never existed outside it, so it gets no events at all.
func (st *ffState) transient() bool { return st.kind != kindInput && st.action == actRemove }

// session implements edgeagent.ProcessSession on the durable repository.
type session struct {
	n       *node
	repo    *buffer.Repo
	ffs     map[edgeagent.ID]*ffState
	order   []*ffState
	content map[uint64]*buffer.NewContent
	events  []provenance.Event
	onOK    []func()
	onFail  []func()
	err     error
	rr      int // round-robin position over inputs
}

func newSession(n *node) *session {
	return &session{n: n, repo: n.repo, ffs: map[edgeagent.ID]*ffState{}, content: map[uint64]*buffer.NewContent{}}
}

func (s *session) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// state returns the session's state of ff, recording an error if ff is not
// the session's.
func (s *session) state(ff *edgeagent.FlowFile) *ffState {
	if ff == nil {
		s.fail(fmt.Errorf("%s: nil flowfile: %w", s.n.name, edgeagent.ErrUnknownFlowFile))
		return nil
	}
	st := s.ffs[ff.ID]
	if st == nil {
		s.fail(fmt.Errorf("%s: flowfile %s: %w", s.n.name, ff.ID, edgeagent.ErrUnknownFlowFile))
		return nil
	}
	return st
}

func (s *session) track(st *ffState) *edgeagent.FlowFile {
	s.ffs[st.cur.ID] = st
	s.order = append(s.order, st)
	return st.cur
}

func (s *session) Get() *edgeagent.FlowFile {
	if b := s.GetBatch(1); len(b) == 1 {
		return b[0]
	}
	return nil
}

func (s *session) GetBatch(max int) []*edgeagent.FlowFile {
	var out []*edgeagent.FlowFile
	ins := s.n.inputs
	for i := 0; i < len(ins) && len(out) < max; i++ {
		q := ins[(s.rr+i)%len(ins)]
		items, err := q.Poll(max - len(out))
		if err != nil {
			s.fail(fmt.Errorf("%s: polling %s: %w", s.n.name, q.Name(), err))
			break
		}
		for _, it := range items {
			if it.Content != nil {
				// Inline content: read with the item, and handed back to
				// the repository with the flowfile wherever it is queued.
				s.content[it.FlowFile.Claim] = &buffer.NewContent{Claim: it.FlowFile.Claim, Chunks: [][]byte{it.Content}}
			}
			out = append(out, s.track(&ffState{cur: it.FlowFile, orig: it.FlowFile, item: it, kind: kindInput}))
		}
	}
	if len(ins) > 0 {
		s.rr = (s.rr + 1) % len(ins)
	}
	return out
}

func (s *session) Create() *edgeagent.FlowFile {
	now := time.Now()
	ff := &edgeagent.FlowFile{
		ID:           edgeagent.NewID(),
		EntryTime:    now,
		LineageStart: now,
		Attributes:   map[string]string{edgeagent.AttrAgentID: s.n.agentID},
	}
	ff.Attributes[edgeagent.AttrFilename] = ff.ID.String()
	return s.track(&ffState{cur: ff, kind: kindCreated})
}

func (s *session) CreateChild(parents ...*edgeagent.FlowFile) *edgeagent.FlowFile {
	if len(parents) == 0 {
		return s.Create()
	}
	now := time.Now()
	ff := &edgeagent.FlowFile{ID: edgeagent.NewID(), EntryTime: now, LineageStart: now}
	for i, p := range parents {
		if s.state(p) == nil {
			return p
		}
		ff.Parents = append(ff.Parents, p.ID)
		if p.LineageStart.Before(ff.LineageStart) {
			ff.LineageStart = p.LineageStart
		}
		if i == 0 {
			ff.Attributes = maps.Clone(p.Attributes)
			continue
		}
		for k, v := range ff.Attributes {
			if pv, ok := p.Attributes[k]; !ok || pv != v {
				delete(ff.Attributes, k)
			}
		}
	}
	if ff.Attributes == nil {
		ff.Attributes = map[string]string{}
	}
	if len(parents) > 1 {
		ff.Attributes[edgeagent.AttrFilename] = ff.ID.String()
	}
	return s.track(&ffState{cur: ff, kind: kindChild})
}

func (s *session) Clone(ff *edgeagent.FlowFile) *edgeagent.FlowFile {
	if s.state(ff) == nil {
		return ff
	}
	c := ff.Copy()
	c.ID = edgeagent.NewID()
	c.EntryTime = time.Now()
	c.Parents = []edgeagent.ID{ff.ID}
	return s.track(&ffState{cur: c, kind: kindClone})
}

func (s *session) update(ff *edgeagent.FlowFile, fn func(c *edgeagent.FlowFile)) *edgeagent.FlowFile {
	st := s.state(ff)
	if st == nil {
		return ff
	}
	if st.action != actNone {
		s.fail(fmt.Errorf("%s: flowfile %s changed after it was transferred or removed: %w", s.n.name, ff.ID, edgeagent.ErrUnknownFlowFile))
		return ff
	}
	c := st.cur.Copy()
	fn(c)
	st.cur = c
	return c
}

func (s *session) PutAttribute(ff *edgeagent.FlowFile, key, value string) *edgeagent.FlowFile {
	if key == edgeagent.AttrUUID {
		return ff
	}
	return s.update(ff, func(c *edgeagent.FlowFile) { c.Attributes[key] = value })
}

func (s *session) PutAttributes(ff *edgeagent.FlowFile, attrs map[string]string) *edgeagent.FlowFile {
	return s.update(ff, func(c *edgeagent.FlowFile) {
		for k, v := range attrs {
			if k != edgeagent.AttrUUID {
				c.Attributes[k] = v
			}
		}
	})
}

func (s *session) RemoveAttribute(ff *edgeagent.FlowFile, key string) *edgeagent.FlowFile {
	return s.update(ff, func(c *edgeagent.FlowFile) { delete(c.Attributes, key) })
}

func (s *session) Write(ff *edgeagent.FlowFile, b []byte) *edgeagent.FlowFile {
	if int64(len(b)) > s.repo.MaxContentSize() {
		s.fail(fmt.Errorf("%s: writing %d bytes (limit %d, agent.repository.max_content_size): %w", s.n.name, len(b), s.repo.MaxContentSize(), edgeagent.ErrContentTooLarge))
		return ff
	}
	nc := &buffer.NewContent{Claim: s.repo.NewClaim()}
	for off := 0; off < len(b); off += buffer.ChunkSize {
		nc.Chunks = append(nc.Chunks, b[off:min(off+buffer.ChunkSize, len(b))])
	}
	return s.setContent(ff, nc, int64(len(b)))
}

func (s *session) setContent(ff *edgeagent.FlowFile, nc *buffer.NewContent, size int64) *edgeagent.FlowFile {
	out := s.update(ff, func(c *edgeagent.FlowFile) {
		c.Claim, c.Size = nc.Claim, size
		if size == 0 {
			c.Claim = 0
		}
	})
	if st := s.ffs[ff.ID]; st != nil && out != ff {
		st.contentChanged = true
		if size > 0 {
			s.content[nc.Claim] = nc
		}
	}
	return out
}

func (s *session) WriteFrom(ff *edgeagent.FlowFile, r io.Reader) (*edgeagent.FlowFile, error) {
	nc := &buffer.NewContent{Claim: s.repo.NewClaim()}
	var size int64
	limit := s.repo.MaxContentSize()
	for eof := false; !eof; {
		chunk := make([]byte, buffer.ChunkSize)
		n := 0
		// Fill the chunk; only io.EOF ends the content. Any other error,
		// io.ErrUnexpectedEOF from a truncated stream included, fails.
		for n < len(chunk) {
			m, err := r.Read(chunk[n:])
			n += m
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				return ff, fmt.Errorf("writing content: %w", err)
			}
		}
		if n > 0 {
			size += int64(n)
			if size > limit {
				return ff, fmt.Errorf("writing content (limit %d, agent.repository.max_content_size): %w", limit, edgeagent.ErrContentTooLarge)
			}
			nc.Chunks = append(nc.Chunks, chunk[:n:n])
		}
	}
	if s.state(ff) == nil {
		return ff, s.err
	}
	return s.setContent(ff, nc, size), nil
}

func (s *session) Read(ff *edgeagent.FlowFile) (io.ReadCloser, error) {
	if s.state(ff) == nil {
		return nil, s.err
	}
	if ff.Size == 0 || ff.Claim == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if nc, ok := s.content[ff.Claim]; ok {
		rs := make([]io.Reader, len(nc.Chunks))
		for i, c := range nc.Chunks {
			rs[i] = bytes.NewReader(c)
		}
		return io.NopCloser(io.MultiReader(rs...)), nil
	}
	return s.repo.ReadContent(ff.Claim, ff.Size), nil
}

func (s *session) ReadAll(ff *edgeagent.FlowFile) ([]byte, error) {
	if s.state(ff) == nil {
		return nil, s.err
	}
	if nc, ok := s.content[ff.Claim]; ok && len(nc.Chunks) == 1 {
		return nc.Chunks[0], nil
	}
	rc, err := s.Read(ff)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// The size is known: read exactly that much, with one allocation.
	b := make([]byte, ff.Size)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("reading content of %s: %w", ff.ID, err)
	}
	return b, nil
}

func (s *session) Transfer(ff *edgeagent.FlowFile, rel edgeagent.Relationship) {
	st := s.state(ff)
	if st == nil {
		return
	}
	if _, ok := s.n.rels[rel.Name]; !ok {
		s.fail(fmt.Errorf("%s: transferring to %q: %w", s.n.name, rel.Name, edgeagent.ErrUnknownRelationship))
		return
	}
	st.cur, st.action, st.rel = ff, actTransfer, rel.Name
}

func (s *session) Remove(ff *edgeagent.FlowFile) {
	if st := s.state(ff); st != nil {
		st.cur, st.action = ff, actRemove
	}
}

func (s *session) Return(ff *edgeagent.FlowFile) {
	st := s.state(ff)
	if st == nil {
		return
	}
	if st.kind != kindInput {
		s.fail(fmt.Errorf("%s: returning flowfile %s that did not come from an input: %w", s.n.name, ff.ID, edgeagent.ErrUnknownFlowFile))
		return
	}
	st.cur, st.action = ff, actReturn
}

func (s *session) Penalize(ff *edgeagent.FlowFile) *edgeagent.FlowFile {
	if st := s.state(ff); st != nil {
		st.penalized = true
	}
	return ff
}

func (s *session) Provenance() edgeagent.ProvenanceReporter { return reporter{s} }

func (s *session) OnCommitted(fn func())  { s.onOK = append(s.onOK, fn) }
func (s *session) OnRolledBack(fn func()) { s.onFail = append(s.onFail, fn) }

// size counts what the session did so far (flowfiles and reported events).
func (s *session) size() int { return len(s.order) + len(s.events) }

// active reports whether the session got or made anything.
func (s *session) active() bool { return len(s.order) > 0 }

func (s *session) event(typ provenance.EventType, ff *edgeagent.FlowFile, now time.Time) provenance.Event {
	return provenance.Event{
		Type: typ, Time: now, FlowFileID: ff.ID, Component: s.n.name, ComponentType: s.n.typ,
		ContentSize: ff.Size, LineageStart: ff.LineageStart,
	}
}

// Commit builds one buffer.Change from everything the session did and
// commits it durably.
func (s *session) Commit(ctx context.Context) error {
	if s.err != nil {
		err := s.err
		s.rollback(s.n.sched.Penalty)
		return err
	}
	if len(s.order) == 0 && len(s.events) == 0 {
		s.runCallbacks(s.onOK)
		s.reset()
		return nil
	}
	ch := &buffer.Change{}
	now := time.Now()
	var created, explicit, modified, final []provenance.Event
	forks := map[edgeagent.ID]int{} // parent -> index of its FORK event in created
	for _, st := range s.order {
		ff := st.cur
		if st.action == actNone {
			err := fmt.Errorf("%s: flowfile %s: %w", s.n.name, ff.ID, edgeagent.ErrFlowFileNotHandled)
			s.rollback(s.n.sched.Penalty)
			return err
		}
		transient := st.transient()
		switch {
		case transient:
			// no events
		case st.kind == kindCreated:
			if !st.reportedOrigin {
				e := s.event(provenance.EventCreate, ff, now)
				e.Updated = ff.AllAttributes()
				created = append(created, e)
			}
		case st.kind == kindChild:
			if len(ff.Parents) == 1 {
				p := ff.Parents[0]
				if i, ok := forks[p]; ok {
					created[i].Children = append(created[i].Children, ff.ID)
				} else {
					e := s.event(provenance.EventFork, s.ffs[p].cur, now)
					e.Children = []edgeagent.ID{ff.ID}
					forks[p] = len(created)
					created = append(created, e)
				}
			} else {
				e := s.event(provenance.EventJoin, ff, now)
				e.Parents = ff.Parents
				e.Updated = ff.AllAttributes()
				created = append(created, e)
			}
		case st.kind == kindClone:
			e := s.event(provenance.EventClone, s.ffs[ff.Parents[0]].cur, now)
			e.Children = []edgeagent.ID{ff.ID}
			created = append(created, e)
		case st.kind == kindInput:
			if st.contentChanged && !st.reportedContent {
				modified = append(modified, s.event(provenance.EventContentModified, ff, now))
			}
			if !st.reportedAttrs && !st.contentChanged {
				if upd, rem := diffAttrs(st.orig.Attributes, ff.Attributes); len(upd)+len(rem) > 0 {
					e := s.event(provenance.EventAttributesModified, ff, now)
					e.Updated, e.Removed = upd, rem
					modified = append(modified, e)
				}
			}
		}
		penalty := time.Duration(0)
		if st.penalized {
			penalty = s.n.sched.Penalty
		}
		switch st.action {
		case actReturn:
			rt := buffer.Returned{Item: st.item, Penalty: penalty}
			if ff != st.orig {
				rt.FlowFile = ff
			}
			ch.Return = append(ch.Return, rt)
			continue
		case actRemove:
			if transient {
				continue
			}
			final = append(final, s.event(provenance.EventDrop, ff, now))
			final[len(final)-1].Details = "removed by processor"
		case actTransfer:
			if s.n.autoTerm[st.rel] {
				e := s.event(provenance.EventDrop, ff, now)
				e.Relationship = st.rel
				e.Details = "auto-terminated by " + st.rel + " relationship"
				final = append(final, e)
				break
			}
			for i, q := range s.n.outputs[st.rel] {
				out := ff
				if i > 0 { // fan-out: each further connection gets a clone
					out = ff.Copy()
					out.ID = edgeagent.NewID()
					out.Parents = []edgeagent.ID{ff.ID}
					e := s.event(provenance.EventClone, ff, now)
					e.Children = []edgeagent.ID{out.ID}
					e.Relationship = st.rel
					final = append(final, e)
				}
				ch.Add = append(ch.Add, buffer.Add{Queue: q, FlowFile: out, Penalty: penalty})
			}
		}
		if st.kind == kindInput {
			ch.Consume = append(ch.Consume, st.item)
		}
	}
	for _, e := range s.events {
		if st := s.ffs[e.FlowFileID]; st != nil && st.transient() {
			continue // reported on a flowfile that never left the session
		}
		explicit = append(explicit, e)
	}
	ch.Events = append(append(append(created, explicit...), modified...), final...)
	for _, nc := range s.content {
		ch.Content = append(ch.Content, *nc)
	}
	start := time.Now()
	if err := s.repo.Commit(ctx, ch); err != nil {
		s.rollback(s.n.sched.Penalty)
		return err
	}
	s.n.metrics.commitLatency(time.Since(start))
	s.n.metrics.in.Add(int64(len(ch.Consume)))
	s.n.metrics.out.Add(int64(len(ch.Add)))
	s.runCallbacks(s.onOK)
	s.reset()
	return nil
}

func diffAttrs(old, cur map[string]string) (updated map[string]string, removed []string) {
	for k, v := range cur {
		if ov, ok := old[k]; !ok || ov != v {
			if updated == nil {
				updated = map[string]string{}
			}
			updated[k] = v
		}
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			removed = append(removed, k)
		}
	}
	return updated, removed
}

func (s *session) Rollback() { s.rollback(0) }

// rollback releases the inputs (penalized for penalty) and discards
// everything else.
func (s *session) rollback(penalty time.Duration) {
	byQueue := map[*buffer.Queue][]*buffer.Item{}
	for _, st := range s.order {
		if st.item != nil {
			byQueue[st.item.Queue] = append(byQueue[st.item.Queue], st.item)
		}
	}
	for q, items := range byQueue {
		q.Release(items, penalty)
	}
	fns := s.onFail
	s.reset()
	s.runCallbacks(fns)
}

func (s *session) runCallbacks(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

func (s *session) reset() {
	clear(s.ffs)
	s.order = s.order[:0]
	s.content = map[uint64]*buffer.NewContent{}
	s.events = nil
	s.onOK, s.onFail = nil, nil
	s.err = nil
}

// reporter implements edgeagent.ProvenanceReporter for a session.
type reporter struct{ s *session }

func (r reporter) add(typ provenance.EventType, ff *edgeagent.FlowFile, uri, rel, details string) *ffState {
	st := r.s.state(ff)
	if st == nil {
		return nil
	}
	e := r.s.event(typ, ff, time.Now())
	e.TransitURI, e.Relationship, e.Details = uri, rel, details
	if typ == provenance.EventReceive {
		e.Updated = ff.AllAttributes()
	}
	r.s.events = append(r.s.events, e)
	return st
}

func (r reporter) Receive(ff *edgeagent.FlowFile, uri, details string) {
	if st := r.add(provenance.EventReceive, ff, uri, "", details); st != nil {
		st.reportedOrigin = true
	}
}

func (r reporter) Fetch(ff *edgeagent.FlowFile, uri, details string) {
	if st := r.add(provenance.EventFetch, ff, uri, "", details); st != nil {
		st.reportedOrigin, st.reportedContent = true, true
	}
}

func (r reporter) Send(ff *edgeagent.FlowFile, uri, details string) {
	r.add(provenance.EventSend, ff, uri, "", details)
}

func (r reporter) Route(ff *edgeagent.FlowFile, rel edgeagent.Relationship, details string) {
	r.add(provenance.EventRoute, ff, "", rel.Name, details)
}

func (r reporter) ModifyContent(ff *edgeagent.FlowFile, details string) {
	if st := r.add(provenance.EventContentModified, ff, "", "", details); st != nil {
		st.reportedContent = true
	}
}

func (r reporter) ModifyAttributes(ff *edgeagent.FlowFile, details string) {
	st := r.s.state(ff)
	if st == nil {
		return
	}
	e := r.s.event(provenance.EventAttributesModified, ff, time.Now())
	e.Details = details
	if st.orig != nil {
		e.Updated, e.Removed = diffAttrs(st.orig.Attributes, ff.Attributes)
	}
	r.s.events = append(r.s.events, e)
	st.reportedAttrs = true
}
