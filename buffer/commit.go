package buffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/provenance"
)

// Change is everything one session commits, applied atomically by Commit.
type Change struct {
	// Consume lists leased inputs that leave their queue.
	Consume []*Item
	// Return lists leased inputs that go back in place.
	Return []Returned
	// Add lists flowfiles appended to queues.
	Add []Add
	// Content is the content written by the session; a claim no added or
	// returned flowfile references is not stored at all.
	Content []NewContent
	// Events are the provenance events of the session.
	Events []provenance.Event
}

// Returned is a leased input put back in its queue, in place.
type Returned struct {
	Item *Item
	// FlowFile is the new record, or nil when unchanged.
	FlowFile *edgeagent.FlowFile
	// Penalty keeps it from being polled for that long.
	Penalty time.Duration
}

// Add appends a flowfile to a queue.
type Add struct {
	Queue    *Queue
	FlowFile *edgeagent.FlowFile
	Penalty  time.Duration
}

// NewContent is content for a new claim, as chunks of at most ChunkSize bytes.
type NewContent struct {
	Claim  uint64
	Chunks [][]byte
}

// releaseInterval is how often the committer drops the file mapping's
// resident pages (see releaseMappedPages).
const releaseInterval = 100 * time.Millisecond

type commitReq struct {
	change       *Change
	housekeeping bool
	clear        *Queue // drop what this queue holds (not leased), up to clearLimit
	details      string // the DROP events' details for clear
	cleared      int    // set by the transaction: how many were dropped
	done         chan error
}

// clearLimit bounds the flowfiles one transaction of Clear drops.
const clearLimit = 20000

// Clear drops every flowfile queued on q that no session holds, with a DROP
// provenance event each (details says why), in transactions of at most
// clearLimit flowfiles, and returns how many it dropped.
func (r *Repo) Clear(ctx context.Context, q *Queue, details string) (int, error) {
	total := 0
	for {
		req := &commitReq{clear: q, details: details}
		if err := r.submit(ctx, req); err != nil {
			return total, err
		}
		total += req.cleared
		if req.cleared < clearLimit {
			return total, nil
		}
	}
}

// Commit applies ch durably: when it returns nil the change is on disk (one
// fsync, shared with concurrent commits). On error nothing of ch was applied
// and the leased inputs are still leased: release them.
func (r *Repo) Commit(ctx context.Context, ch *Change) error {
	return r.submit(ctx, &commitReq{change: ch})
}

func (r *Repo) submit(ctx context.Context, req *commitReq) error {
	req.done = make(chan error, 1)
	if r.closed.Load() {
		return edgeagent.ErrRepositoryClosed
	}
	select {
	case r.commits <- req:
	case <-r.stop:
		return edgeagent.ErrRepositoryClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the request is always answered: the committer drains the
	// channel before it exits. Waiting here ignores ctx so that a caller never
	// mistakes a commit that happened for one that did not.
	return <-req.done
}

func (r *Repo) committer() {
	defer r.wg.Done()
	batch := make([]*commitReq, 0, r.opts.MaxBatch)
	for {
		select {
		case req := <-r.commits:
			batch = append(batch[:0], req)
		case <-r.stop:
			for {
				select {
				case req := <-r.commits:
					r.apply([]*commitReq{req})
				default:
					return
				}
			}
		}
	more:
		for len(batch) < r.opts.MaxBatch {
			select {
			case req := <-r.commits:
				batch = append(batch, req)
			default:
				break more
			}
		}
		r.apply(batch)
	}
}

// apply commits a batch in one transaction; if that fails, it retries each
// request alone so that one bad change does not fail the others.
func (r *Repo) apply(batch []*commitReq) {
	st, err := r.runTx(batch)
	if err != nil && len(batch) > 1 {
		for _, req := range batch {
			r.apply([]*commitReq{req})
		}
		return
	}
	if err == nil {
		st.publish()
		r.lastErr.Store(nil)
	} else {
		err = fmt.Errorf("committing to %s: %w", r.path, err)
		r.lastErr.Store(&err)
		r.log.Error("commit failed", "err", err)
	}
	for _, req := range batch {
		req.done <- err
	}
	if err == nil && st.housekeeping {
		r.refreshUsage()
	}
	if now := time.Now(); now.Sub(r.lastRelease) >= releaseInterval {
		r.lastRelease = now
		r.releaseMappedPages()
	}
}

// queueDelta is what a transaction did to one queue, applied to the
// in-memory state after the transaction is durable.
type queueDelta struct {
	count, bytes int64
	unlease      [][]byte
	penalize     map[string]time.Time
	added        bool
	removed      bool
	returned     bool // leased items went back in place: Poll must rescan
}

type txState struct {
	r            *Repo
	tx           *bolt.Tx
	now          time.Time
	deltas       map[*Queue]*queueDelta
	refs         map[uint64]refDelta
	content      map[uint64]*NewContent
	events       []provenance.Event
	housekeeping bool
	buf          []byte
}

func (r *Repo) runTx(batch []*commitReq) (*txState, error) {
	st := &txState{
		r: r, now: r.opts.Now(),
		deltas:  map[*Queue]*queueDelta{},
		refs:    map[uint64]refDelta{},
		content: map[uint64]*NewContent{},
		buf:     r.arena[:0],
	}
	defer func() { r.arena = st.buf[:0] }() // the transaction has ended
	err := r.db.Update(func(tx *bolt.Tx) error {
		st.tx = tx
		for _, req := range batch {
			if req.housekeeping {
				st.housekeeping = true
				continue
			}
			if req.clear != nil {
				n, err := st.clear(req.clear, req.details)
				if err != nil {
					return err
				}
				req.cleared = n
				continue
			}
			if err := st.applyChange(req.change); err != nil {
				return err
			}
		}
		if err := st.enforceDropOldest(); err != nil {
			return err
		}
		if st.housekeeping {
			if err := st.housekeep(); err != nil {
				return err
			}
		}
		if err := st.applyRefs(); err != nil {
			return err
		}
		if len(st.events) > 0 {
			if err := provenance.Append(tx, st.events); err != nil {
				return fmt.Errorf("writing provenance: %w", err)
			}
		}
		for q, d := range st.deltas {
			if err := st.putStats(q, d); err != nil {
				return err
			}
		}
		// Every claim in this transaction was allocated before now.
		return tx.Bucket(bucketMeta).Put(keyClaimHW, binary.BigEndian.AppendUint64(nil, r.nextClaim.Load()))
	})
	return st, err
}

func (st *txState) delta(q *Queue) *queueDelta {
	d := st.deltas[q]
	if d == nil {
		d = &queueDelta{}
		st.deltas[q] = d
	}
	return d
}

func (st *txState) applyChange(ch *Change) error {
	for i := range ch.Content {
		c := &ch.Content[i]
		st.content[c.Claim] = c
	}
	for _, it := range ch.Consume {
		if err := st.remove(it.Queue, it.Key, it.FlowFile); err != nil {
			return err
		}
		d := st.delta(it.Queue)
		d.unlease = append(d.unlease, it.Key)
	}
	for _, rt := range ch.Return {
		q, d := rt.Item.Queue, st.delta(rt.Item.Queue)
		d.unlease = append(d.unlease, rt.Item.Key)
		d.added = true
		d.returned = true
		if rt.Penalty > 0 {
			if d.penalize == nil {
				d.penalize = map[string]time.Time{}
			}
			d.penalize[string(rt.Item.Key)] = st.now.Add(rt.Penalty)
		}
		if rt.FlowFile == nil {
			continue
		}
		old := rt.Item.FlowFile
		val, err := st.itemValue(rt.Item.Enqueued, rt.FlowFile)
		if err != nil {
			return err
		}
		if err := st.tx.Bucket(q.items).Put(rt.Item.Key, val); err != nil {
			return fmt.Errorf("returning to queue %s: %w", q.name, err)
		}
		d.bytes += rt.FlowFile.Size - old.Size
		st.ref(old.Claim, old.Size, -1)
		st.ref(rt.FlowFile.Claim, rt.FlowFile.Size, 1)
	}
	for _, a := range ch.Add {
		key, err := st.add(a.Queue, a.FlowFile)
		if err != nil {
			return err
		}
		if a.Penalty > 0 {
			d := st.delta(a.Queue)
			if d.penalize == nil {
				d.penalize = map[string]time.Time{}
			}
			d.penalize[string(key)] = st.now.Add(a.Penalty)
		}
	}
	st.events = append(st.events, ch.Events...)
	return nil
}

func (st *txState) ref(claim uint64, size, n int64) {
	if claim != 0 && !IsInline(size) {
		r := st.refs[claim]
		r.delta += n
		r.size = size
		st.refs[claim] = r
	}
}

// refDelta is the change of one claim's reference count in a transaction.
type refDelta struct {
	delta int64
	size  int64 // the content size, from the flowfile records
}

func (st *txState) itemValue(enq time.Time, ff *edgeagent.FlowFile) ([]byte, error) {
	var inline []byte
	if IsInline(ff.Size) {
		nc := st.content[ff.Claim]
		if nc == nil {
			return nil, fmt.Errorf("queueing flowfile %s: its %d content bytes were not given with the change", ff.ID, ff.Size)
		}
		if len(nc.Chunks) == 1 {
			inline = nc.Chunks[0]
		} else {
			for _, c := range nc.Chunks {
				inline = append(inline, c...)
			}
		}
		if int64(len(inline)) != ff.Size {
			return nil, fmt.Errorf("queueing flowfile %s: %d content bytes given, its size is %d", ff.ID, len(inline), ff.Size)
		}
	}
	start := len(st.buf)
	st.buf = appendItem(st.buf, enq.UnixNano(), ff, inline)
	// bbolt keeps references to values until the transaction ends: never
	// reuse the arena's bytes within it, start a new one when full (the
	// last one is reused by the next transaction).
	v := st.buf[start:len(st.buf):len(st.buf)]
	if cap(st.buf)-len(st.buf) < 8<<10 {
		st.buf = make([]byte, 0, 256<<10)
	}
	return v, nil
}

func (st *txState) add(q *Queue, ff *edgeagent.FlowFile) ([]byte, error) {
	q.mu.Lock()
	q.seq++
	seq, p := q.seq, q.cfg.Prioritizer
	q.mu.Unlock()
	key := itemKey(p, ff, seq)
	items := st.tx.Bucket(q.items)
	if items == nil {
		return nil, fmt.Errorf("appending to queue %s: bucket missing: %w", q.name, edgeagent.ErrRepositoryCorrupt)
	}
	if p == FIFO {
		items.FillPercent = 0.95
	}
	val, err := st.itemValue(st.now, ff)
	if err != nil {
		return nil, err
	}
	if err := items.Put(key, val); err != nil {
		return nil, fmt.Errorf("appending to queue %s: %w", q.name, err)
	}
	if p != FIFO {
		age := st.tx.Bucket(q.age)
		age.FillPercent = 0.95
		if err := age.Put(binary.BigEndian.AppendUint64(nil, seq), key); err != nil {
			return nil, fmt.Errorf("appending to queue %s: %w", q.name, err)
		}
	}
	d := st.delta(q)
	d.count++
	d.bytes += ff.Size
	d.added = true
	st.ref(ff.Claim, ff.Size, 1)
	return key, nil
}

func (st *txState) remove(q *Queue, key []byte, ff *edgeagent.FlowFile) error {
	if err := st.tx.Bucket(q.items).Delete(key); err != nil {
		return fmt.Errorf("removing from queue %s: %w", q.name, err)
	}
	if q.prioritizer() != FIFO {
		if err := st.tx.Bucket(q.age).Delete(key[len(key)-8:]); err != nil {
			return fmt.Errorf("removing from queue %s: %w", q.name, err)
		}
	}
	d := st.delta(q)
	d.count--
	d.bytes -= ff.Size
	d.removed = true
	st.ref(ff.Claim, ff.Size, -1)
	return nil
}

// oldest calls fn for the queue's items in enqueue order, skipping leased
// ones, until fn returns false.
func (st *txState) oldest(q *Queue, fn func(key []byte, enq time.Time, ff *edgeagent.FlowFile) (bool, error)) error {
	items := st.tx.Bucket(q.items)
	var next func() ([]byte, []byte)
	if q.prioritizer() == FIFO {
		c := items.Cursor()
		k, v := c.First()
		next = func() ([]byte, []byte) {
			rk, rv := k, v
			k, v = c.Next()
			return rk, rv
		}
	} else {
		c := st.tx.Bucket(q.age).Cursor()
		_, pk := c.First()
		next = func() ([]byte, []byte) {
			if pk == nil {
				return nil, nil
			}
			rk := pk
			_, pk = c.Next()
			return rk, items.Get(rk)
		}
	}
	// Collect first: deleting while iterating a bbolt cursor skips items.
	type entry struct {
		key []byte
		enq time.Time
		ff  *edgeagent.FlowFile
	}
	var todo []entry
	q.mu.Lock()
	leased := q.leased
	for k, v := next(); k != nil; k, v = next() {
		if _, ok := leased[string(k)]; ok {
			continue
		}
		enq, ff, _, err := decodeItem(v)
		if err != nil {
			q.mu.Unlock()
			return fmt.Errorf("reading queue %s: %w", q.name, err)
		}
		e := entry{append([]byte(nil), k...), time.Unix(0, enq), ff}
		more, err := fn(e.key, e.enq, e.ff)
		if err != nil {
			q.mu.Unlock()
			return err
		}
		if !more {
			break
		}
		todo = append(todo, e)
	}
	q.mu.Unlock()
	for _, e := range todo {
		if err := st.remove(q, e.key, e.ff); err != nil {
			return err
		}
		d := st.delta(q)
		d.unlease = append(d.unlease, e.key) // clears any penalty too
	}
	return nil
}

func (st *txState) dropEvent(typ provenance.EventType, q *Queue, ff *edgeagent.FlowFile, details string) {
	st.events = append(st.events, provenance.Event{
		Type: typ, Time: st.now, FlowFileID: ff.ID, Component: q.name, ComponentType: "Connection",
		ContentSize: ff.Size, LineageStart: ff.LineageStart, Details: details,
	})
}

// clear drops up to clearLimit of q's flowfiles that no session holds,
// oldest first, and returns how many.
func (st *txState) clear(q *Queue, details string) (int, error) {
	n := 0
	err := st.oldest(q, func(_ []byte, _ time.Time, ff *edgeagent.FlowFile) (bool, error) {
		if n >= clearLimit {
			return false, nil
		}
		n++
		st.dropEvent(provenance.EventDrop, q, ff, details)
		return true, nil
	})
	return n, err
}

// enforceDropOldest drops the oldest flowfiles of loss-tolerant queues that
// this transaction pushed over a threshold.
func (st *txState) enforceDropOldest() error {
	for q, d := range st.deltas {
		cfg := q.Config()
		if !cfg.DropOldest || !d.added {
			continue
		}
		q.mu.Lock()
		count, bytes := q.count+d.count, q.bytes+d.bytes
		q.mu.Unlock()
		over := func() bool {
			return (cfg.MaxCount > 0 && count > cfg.MaxCount) || (cfg.MaxBytes > 0 && bytes > cfg.MaxBytes)
		}
		if !over() {
			continue
		}
		err := st.oldest(q, func(_ []byte, _ time.Time, ff *edgeagent.FlowFile) (bool, error) {
			if !over() {
				return false, nil
			}
			count--
			bytes -= ff.Size
			st.dropEvent(provenance.EventDrop, q, ff, "dropped oldest: connection full (when_full: drop_oldest)")
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// housekeep expires flowfiles, evicts loss-tolerant queues at the budget and
// prunes provenance, each bounded so the transaction stays small.
func (st *txState) housekeep() error {
	const limit = 20000
	r := st.r
	r.mu.Lock()
	queues := make([]*Queue, 0, len(r.queues))
	for _, q := range r.queues {
		queues = append(queues, q)
	}
	r.mu.Unlock()
	n := 0
	for _, q := range queues {
		cfg := q.Config()
		if cfg.ExpireAfter <= 0 {
			continue
		}
		cutoff := st.now.Add(-cfg.ExpireAfter)
		err := st.oldest(q, func(_ []byte, enq time.Time, ff *edgeagent.FlowFile) (bool, error) {
			if n >= limit || !enq.Before(cutoff) {
				return false, nil
			}
			n++
			st.dropEvent(provenance.EventExpire, q, ff, fmt.Sprintf("expired: waited longer than %s", cfg.ExpireAfter))
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	if r.evictReq.Swap(false) {
		target := r.used.Load() - r.opts.MaxSize*85/100
		for _, q := range queues {
			if target <= 0 || n >= limit {
				break
			}
			if !q.Config().DropOldest {
				continue
			}
			err := st.oldest(q, func(_ []byte, _ time.Time, ff *edgeagent.FlowFile) (bool, error) {
				if target <= 0 || n >= limit {
					return false, nil
				}
				n++
				target -= ff.Size + 256
				st.dropEvent(provenance.EventDrop, q, ff, "evicted: repository at its disk budget (loss-tolerant connection)")
				return true, nil
			})
			if err != nil {
				return err
			}
		}
	}
	if _, err := provenance.Prune(st.tx, st.now, r.opts.ProvenanceMaxAge, r.opts.ProvenanceMaxSize, limit); err != nil {
		return fmt.Errorf("pruning provenance: %w", err)
	}
	return nil
}

// applyRefs stores new content that is referenced and deletes content whose
// last reference went away. A claim with exactly one reference (the common
// case) has no record in the claims bucket: only shared content (clones,
// fan-out) pays for a reference count.
func (st *txState) applyRefs() error {
	contentB := st.tx.Bucket(bucketContent)
	claimsB := st.tx.Bucket(bucketClaims)
	contentB.FillPercent = 0.95
	claimsB.FillPercent = 0.95
	for claim, rd := range st.refs {
		d := rd.delta
		if nc, ok := st.content[claim]; ok {
			if d <= 0 {
				continue
			}
			for i, c := range nc.Chunks {
				k := chunkKey(claim, uint32(i))
				if err := contentB.Put(k[:], c); err != nil {
					return fmt.Errorf("writing content: %w", err)
				}
			}
			if d > 1 {
				if err := claimsB.Put(claimKey(claim), claimValue(d)); err != nil {
					return fmt.Errorf("writing content: %w", err)
				}
			}
			continue
		}
		if d == 0 {
			continue
		}
		refs, recorded := int64(1), false
		if v := claimsB.Get(claimKey(claim)); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("updating content claim %d: malformed reference count: %w", claim, edgeagent.ErrRepositoryCorrupt)
			}
			refs, recorded = int64(binary.BigEndian.Uint64(v)), true
		}
		refs += d
		switch {
		case refs > 1:
			if err := claimsB.Put(claimKey(claim), claimValue(refs)); err != nil {
				return fmt.Errorf("updating content claim %d: %w", claim, err)
			}
			continue
		case refs == 1:
			if recorded {
				if err := claimsB.Delete(claimKey(claim)); err != nil {
					return fmt.Errorf("updating content claim %d: %w", claim, err)
				}
			}
			continue
		}
		if recorded {
			if err := claimsB.Delete(claimKey(claim)); err != nil {
				return fmt.Errorf("deleting content claim %d: %w", claim, err)
			}
		}
		for i := int64(0); i*ChunkSize < rd.size || i == 0; i++ {
			k := chunkKey(claim, uint32(i))
			if err := contentB.Delete(k[:]); err != nil {
				return fmt.Errorf("deleting content claim %d: %w", claim, err)
			}
		}
	}
	return nil
}

func claimKey(claim uint64) []byte { return binary.BigEndian.AppendUint64(nil, claim) }

func claimValue(refs int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(refs))
}

func (st *txState) putStats(q *Queue, d *queueDelta) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	count, bytes := q.count, q.bytes
	q.count += d.count
	q.bytes += d.bytes
	err := q.putStats(st.tx)
	q.count, q.bytes = count, bytes
	return err
}

// publish applies the transaction's effects to the in-memory queue state.
func (st *txState) publish() {
	for q, d := range st.deltas {
		q.mu.Lock()
		q.count += d.count
		q.bytes += d.bytes
		if d.returned {
			q.hint = nil
		}
		for _, k := range d.unlease {
			delete(q.leased, string(k))
			delete(q.penalized, string(k))
		}
		for k, until := range d.penalize {
			q.penalized[k] = until
		}
		q.mu.Unlock()
		if d.added || len(d.unlease) > 0 {
			signal(q.ready)
		}
		if d.removed {
			signal(q.drained)
		}
	}
}
