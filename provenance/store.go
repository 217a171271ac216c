package provenance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"edgeagent.dev"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names. Every bucket of this package starts with "prov.".
var (
	bucketEvents = []byte("prov.events") // eventID -> encoded event
	bucketFF     = []byte("prov.ff")     // flowfileID + eventID -> empty
	bucketTime   = []byte("prov.time")   // highWaterTime + eventID -> empty
	bucketMeta   = []byte("prov.meta")   // "stats" -> stats record
	keyStats     = []byte("stats")
)

// Fill percents used when writing. Event and time keys only ever grow, so
// pages are packed full. Flowfile index keys grow almost always (flowfile IDs
// are UUIDv7 and events come soon after a flowfile is created), but events of
// older flowfiles land inside the key range; leave them a little room.
const (
	fillSequential = 1.0
	fillFlowFile   = 0.9
)

const (
	eventKeyLen = 8
	ffKeyLen    = len(edgeagent.ID{}) + eventKeyLen
	timeKeyLen  = 8 + eventKeyLen
)

// emptyValue is the value of index entries.
var emptyValue = []byte{}

// storedSize is what one event adds to Stats.Bytes: its record and key and
// one index key for each flowfile it involves.
func storedSize(valueLen, involved int) int64 {
	return int64(eventKeyLen + valueLen + involved*ffKeyLen)
}

// Stats summarises the stored events.
type Stats struct {
	// Count is the number of stored events.
	Count int64 `json:"count"`
	// Bytes approximates the space the events take: records, keys and index
	// keys (bbolt page overhead not included).
	Bytes int64 `json:"bytes"`
	// Oldest is the Time of the event with FirstID; zero when Count is 0
	// (or that event does not decode).
	Oldest time.Time `json:"oldest"`
	// Newest is the latest event Time among the events appended since the
	// store was last empty; zero when Count is 0.
	Newest time.Time `json:"newest"`
	// FirstID is the ID of the oldest stored event; 0 when Count is 0.
	FirstID uint64 `json:"first_id"`
	// LastID is the last event ID ever assigned (0 before the first Append),
	// whether or not that event was pruned since.
	LastID uint64 `json:"last_id"`
}

// statsVersion is the first byte of the stats record.
const statsVersion = 1

func (s *Stats) appendBinary(dst []byte) []byte {
	dst = append(dst, statsVersion)
	dst = binary.AppendVarint(dst, s.Count)
	dst = binary.AppendVarint(dst, s.Bytes)
	dst = binary.AppendVarint(dst, s.Oldest.Unix())
	dst = binary.AppendUvarint(dst, uint64(s.Oldest.Nanosecond()))
	dst = binary.AppendVarint(dst, s.Newest.Unix())
	dst = binary.AppendUvarint(dst, uint64(s.Newest.Nanosecond()))
	dst = binary.AppendUvarint(dst, s.FirstID)
	return binary.AppendUvarint(dst, s.LastID)
}

func (s *Stats) unmarshal(b []byte) error {
	d := decoder{b: b}
	if v := d.byte("stats version"); d.err == nil && v != statsVersion {
		return fmt.Errorf("decoding provenance stats: version %d: %w", v, ErrCorruptEvent)
	}
	s.Count = d.varint("count")
	s.Bytes = d.varint("bytes")
	sec, nsec := d.time("oldest")
	s.Oldest = time.Unix(sec, nsec).UTC()
	sec, nsec = d.time("newest")
	s.Newest = time.Unix(sec, nsec).UTC()
	s.FirstID = d.uvarint("first id")
	s.LastID = d.uvarint("last id")
	if err := d.finish(); err != nil {
		return fmt.Errorf("decoding provenance stats: %w", err)
	}
	return nil
}

// buckets are this package's buckets in one transaction.
type buckets struct {
	events, ff, time, meta *bolt.Bucket
}

func openBuckets(tx *bolt.Tx) (buckets, error) {
	b := buckets{
		events: tx.Bucket(bucketEvents),
		ff:     tx.Bucket(bucketFF),
		time:   tx.Bucket(bucketTime),
		meta:   tx.Bucket(bucketMeta),
	}
	if b.events == nil || b.ff == nil || b.time == nil || b.meta == nil {
		return b, ErrNotInitialized
	}
	return b, nil
}

func (b buckets) stats() (Stats, error) {
	var s Stats
	if v := b.meta.Get(keyStats); v != nil {
		if err := s.unmarshal(v); err != nil {
			return Stats{}, err
		}
	}
	s.LastID = b.events.Sequence()
	return s, nil
}

func (b buckets) putStats(s *Stats) error {
	// The value must stay valid until the transaction ends: a fresh slice.
	if err := b.meta.Put(keyStats, s.appendBinary(make([]byte, 0, 64))); err != nil {
		return fmt.Errorf("writing provenance stats: %w", err)
	}
	return nil
}

// EnsureBuckets creates the provenance buckets where they do not exist yet.
// Call it once in a write transaction when the repository opens; the other
// functions return ErrNotInitialized until it has been committed.
func EnsureBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketEvents, bucketFF, bucketTime, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	return nil
}

// Append stores events in the write transaction tx. It assigns each event the
// next event ID (setting ID in the slice), writes the event record, one
// flowfile index entry for every flowfile the event involves (FlowFileID,
// Parents and Children) and, once per call, the statistics. Events are stored
// as given; their times are expected (not required) to follow the append
// order. Nothing is written when any event has an invalid Type or a zero
// FlowFileID (ErrInvalidEvent).
//
// Event records are encoded into one buffer that bbolt references until the
// transaction ends; the caller may reuse the events slice right after Append
// returns. When Append returns an error the caller must roll the transaction
// back: some events may have been written and some IDs set.
func Append(tx *bolt.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	if !tx.Writable() {
		return fmt.Errorf("appending provenance events: %w", berrors.ErrTxNotWritable)
	}
	hint := 0
	for i := range events {
		e := &events[i]
		if !e.Type.Valid() {
			return fmt.Errorf("appending provenance event %d of %d: type %q: %w", i, len(events), e.Type, ErrInvalidEvent)
		}
		if e.FlowFileID.IsZero() {
			return fmt.Errorf("appending provenance event %d of %d: zero flowfile id: %w", i, len(events), ErrInvalidEvent)
		}
		hint += encodedSizeHint(e)
	}
	bk, err := openBuckets(tx)
	if err != nil {
		return fmt.Errorf("appending provenance events: %w", err)
	}
	// FillPercent lives on the bucket handle, which bbolt keeps for the
	// rest of this transaction.
	bk.events.FillPercent = fillSequential
	bk.time.FillPercent = fillSequential
	bk.ff.FillPercent = fillFlowFile
	st, err := bk.stats()
	if err != nil {
		return fmt.Errorf("appending provenance events: %w", err)
	}

	var (
		buf   = make([]byte, 0, hint) // values stay referenced by bbolt until commit
		key   [eventKeyLen]byte
		ikey  [ffKeyLen]byte
		inv   []edgeagent.ID
		keys  []string
		seq   = bk.events.Sequence()
		first = seq + 1
		empty = st.Count <= 0
		high  = st.Newest
	)
	if empty {
		high = events[0].Time
	}
	for i := range events {
		e := &events[i]
		seq++
		e.ID = seq
		start := len(buf)
		buf, keys, err = appendEvent(buf, e, keys)
		if err != nil {
			return fmt.Errorf("appending provenance events: %w", err)
		}
		// A full slice expression: later appends never write into val,
		// and if buf grows val keeps the old array.
		val := buf[start:len(buf):len(buf)]
		binary.BigEndian.PutUint64(key[:], seq)
		if err := bk.events.Put(key[:], val); err != nil {
			return fmt.Errorf("writing provenance event %d: %w", seq, err)
		}
		inv = involved(inv[:0], e.FlowFileID, e.Parents, e.Children)
		copy(ikey[len(edgeagent.ID{}):], key[:])
		for _, id := range inv {
			copy(ikey[:], id[:])
			if err := bk.ff.Put(ikey[:], emptyValue); err != nil {
				return fmt.Errorf("indexing provenance event %d: %w", seq, err)
			}
		}
		st.Bytes += storedSize(len(val), len(inv))
		if e.Time.After(high) {
			high = e.Time
		}
	}
	bk.events.SetSequence(seq)

	// One time index entry per call, and only when the high-water time rose
	// (or the store was empty): an entry (T, id) promises that every event
	// before id has a time below T.
	if empty || high.After(st.Newest) {
		var tkey [timeKeyLen]byte
		binary.BigEndian.PutUint64(tkey[:8], sortableTime(high))
		binary.BigEndian.PutUint64(tkey[8:], first)
		if err := bk.time.Put(tkey[:], emptyValue); err != nil {
			return fmt.Errorf("indexing provenance time: %w", err)
		}
	}
	if empty {
		st.Count = 0
		st.FirstID = first
		st.Oldest = events[0].Time
	}
	st.Count += int64(len(events))
	st.Newest = high
	st.LastID = seq
	return bk.putStats(&st)
}

// sortableTime maps t to a uint64 whose big-endian bytes sort like the times
// (nanosecond precision, clamped to the years 1678 to 2262).
func sortableTime(t time.Time) uint64 {
	var n int64
	switch sec := t.Unix(); {
	case sec < math.MinInt64/int64(time.Second)+1:
		n = math.MinInt64
	case sec > math.MaxInt64/int64(time.Second)-1:
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	return uint64(n) ^ (1 << 63)
}

func eventKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, eventKeyLen), id)
}

func decodeStored(k, v []byte) (Event, error) {
	var e Event
	if err := e.UnmarshalBinary(v); err != nil {
		return Event{}, fmt.Errorf("reading provenance event %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return e, nil
}

// Prune enforces retention in the write transaction tx. It removes events
// oldest first (in ID order) while the oldest event's Time is before
// now-maxAge or the stored Bytes exceed maxSize, and at most limit events per
// call, so the caller can spread a large prune over many small transactions
// and keep them short. maxAge <= 0, maxSize <= 0 or limit <= 0 turn that
// bound off. Pruning removes the events' flowfile index entries and keeps
// Stats right. An event that no longer decodes is removed when Prune reaches
// it (its index entries, which cannot be found, are left; readers skip them).
//
// Retention follows ID order: after the wall clock stepped back, newer events
// can carry older times and wait behind an event with a later time.
func Prune(tx *bolt.Tx, now time.Time, maxAge time.Duration, maxSize int64, limit int) (removed int, err error) {
	if !tx.Writable() {
		return 0, fmt.Errorf("pruning provenance: %w", berrors.ErrTxNotWritable)
	}
	bk, err := openBuckets(tx)
	if err != nil {
		return 0, fmt.Errorf("pruning provenance: %w", err)
	}
	st, err := bk.stats()
	if err != nil {
		return 0, fmt.Errorf("pruning provenance: %w", err)
	}
	cutoff := now.Add(-maxAge)
	var (
		evKeys []uint64
		ffKeys []byte // concatenated flowfile index keys
		inv    []edgeagent.ID
	)
	c := bk.events.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if limit > 0 && len(evKeys) >= limit {
			break
		}
		h, herr := decodeHeader(v, true)
		if herr == nil {
			ageDue := maxAge > 0 && h.Time.Before(cutoff)
			sizeDue := maxSize > 0 && st.Bytes > maxSize
			if !ageDue && !sizeDue {
				break
			}
			inv = involved(inv[:0], h.FlowFileID, h.Parents, h.Children)
			for _, id := range inv {
				ffKeys = append(ffKeys, id[:]...)
				ffKeys = append(ffKeys, k...)
			}
		} else {
			inv = inv[:0] // corrupt: its index entries cannot be found
		}
		evKeys = append(evKeys, binary.BigEndian.Uint64(k))
		st.Bytes -= storedSize(len(v), len(inv))
	}
	if len(evKeys) == 0 {
		return 0, nil
	}
	for _, id := range evKeys {
		if err := bk.events.Delete(eventKey(id)); err != nil {
			return 0, fmt.Errorf("pruning provenance event %d: %w", id, err)
		}
	}
	for off := 0; off < len(ffKeys); off += ffKeyLen {
		if err := bk.ff.Delete(ffKeys[off : off+ffKeyLen]); err != nil {
			return 0, fmt.Errorf("pruning provenance index: %w", err)
		}
	}
	st.Count -= int64(len(evKeys))

	// The new oldest event, and time index entries no longer needed.
	k, v := bk.events.Cursor().First()
	if k == nil {
		st = Stats{LastID: st.LastID}
	} else {
		st.FirstID = binary.BigEndian.Uint64(k)
		st.Oldest = time.Time{} // unknown when the event does not decode; the next Prune removes it
		if h, err := decodeHeader(v, false); err == nil {
			st.Oldest = h.Time
		}
		if st.Count < 1 { // repair drift
			st.Count = 1
		}
		if st.Bytes < 0 {
			st.Bytes = 0
		}
	}
	if err := pruneTimeIndex(bk.time, st.FirstID, k == nil); err != nil {
		return 0, err
	}
	if err := bk.putStats(&st); err != nil {
		return 0, err
	}
	return len(evKeys), nil
}

// pruneTimeIndex deletes the time index entries made useless by pruning up to
// (not including) firstID: every entry followed by one that starts at or
// before firstID. With all set, it deletes every entry.
func pruneTimeIndex(b *bolt.Bucket, firstID uint64, all bool) error {
	var dels [][]byte
	var prev []byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if !all && binary.BigEndian.Uint64(k[8:]) > firstID {
			break
		}
		if prev != nil {
			dels = append(dels, prev)
		}
		prev = bytes.Clone(k)
	}
	if all && prev != nil {
		dels = append(dels, prev)
	}
	for _, k := range dels {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("pruning provenance time index: %w", err)
		}
	}
	return nil
}

// Get returns the event with the given ID, and false when there is none.
func Get(tx *bolt.Tx, id uint64) (Event, bool, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return Event{}, false, fmt.Errorf("getting provenance event %d: %w", id, err)
	}
	k := eventKey(id)
	v := bk.events.Get(k)
	if v == nil {
		return Event{}, false, nil
	}
	e, err := decodeStored(k, v)
	return e, err == nil, err
}

// eventIDsOf returns the IDs of the events that involve flowfile id, in order.
func (b buckets) eventIDsOf(id edgeagent.ID) []uint64 {
	var ids []uint64
	c := b.ff.Cursor()
	for k, _ := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, _ = c.Next() {
		if len(k) == ffKeyLen {
			ids = append(ids, binary.BigEndian.Uint64(k[len(id):]))
		}
	}
	return ids
}

// ByFlowFile returns every event that involves flowfile id, in ID order: the
// events about it and the events that list it as a parent or child (the FORK
// or CLONE that made it, the JOIN it went into). It returns no events, and no
// error, for a flowfile it knows nothing about.
func ByFlowFile(tx *bolt.Tx, id edgeagent.ID) ([]Event, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, fmt.Errorf("listing provenance of %s: %w", id, err)
	}
	ids := bk.eventIDsOf(id)
	out := make([]Event, 0, len(ids))
	for _, eid := range ids {
		k := eventKey(eid)
		v := bk.events.Get(k)
		if v == nil {
			continue // index entry of an event pruned while corrupt
		}
		e, err := decodeStored(k, v)
		if err != nil {
			return nil, fmt.Errorf("listing provenance of %s: %w", id, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// LineageGraph is the provenance graph of one flowfile, as Lineage returns
// it. (The type cannot be called Lineage: that is the function's name.)
type LineageGraph struct {
	// Root is the flowfile the lineage was asked for.
	Root edgeagent.ID `json:"root"`
	// FlowFiles are Root, its ancestors and its descendants, sorted by ID.
	FlowFiles []edgeagent.ID `json:"flowfiles"`
	// Events are the events about those flowfiles (FlowFileID among
	// FlowFiles), sorted by ID. Their Parents and Children can name flowfiles
	// outside FlowFiles: the siblings of a fork, the other inputs of a join.
	Events []Event `json:"events"`
}

// Lineage returns the full lineage of flowfile id: its ancestors (through the
// Parents of events about it and the FORK or CLONE events that list it as a
// child, transitively), its descendants (through the Children of events
// about it and the JOIN events that list it as a parent, transitively), and
// every event about each of them. It reads only the events of those
// flowfiles, found through the flowfile index. An unknown id gives a lineage
// of just the root and no events.
func Lineage(tx *bolt.Tx, id edgeagent.ID) (*LineageGraph, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, fmt.Errorf("computing lineage of %s: %w", id, err)
	}
	w := lineageWalk{bk: bk, cache: map[uint64]*Event{}}
	up, err := w.walk(id, true)
	if err != nil {
		return nil, fmt.Errorf("computing lineage of %s: %w", id, err)
	}
	down, err := w.walk(id, false)
	if err != nil {
		return nil, fmt.Errorf("computing lineage of %s: %w", id, err)
	}
	set := up
	for ff := range down {
		set[ff] = struct{}{}
	}
	l := &LineageGraph{Root: id, FlowFiles: make([]edgeagent.ID, 0, len(set))}
	for ff := range set {
		l.FlowFiles = append(l.FlowFiles, ff)
	}
	slices.SortFunc(l.FlowFiles, func(a, b edgeagent.ID) int { return bytes.Compare(a[:], b[:]) })
	for _, e := range w.cache {
		if _, ok := set[e.FlowFileID]; ok {
			l.Events = append(l.Events, *e)
		}
	}
	slices.SortFunc(l.Events, func(a, b Event) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return l, nil
}

// lineageWalk reads events of flowfiles once, for both walk directions.
type lineageWalk struct {
	bk    buckets
	cache map[uint64]*Event
}

func (w *lineageWalk) eventsOf(ff edgeagent.ID) ([]*Event, error) {
	ids := w.bk.eventIDsOf(ff)
	out := make([]*Event, 0, len(ids))
	for _, eid := range ids {
		if e, ok := w.cache[eid]; ok {
			out = append(out, e)
			continue
		}
		k := eventKey(eid)
		v := w.bk.events.Get(k)
		if v == nil {
			continue
		}
		e, err := decodeStored(k, v)
		if err != nil {
			return nil, err
		}
		w.cache[eid] = &e
		out = append(out, &e)
	}
	return out, nil
}

// walk returns root and every flowfile reachable from it towards the
// ancestors (up) or the descendants.
func (w *lineageWalk) walk(root edgeagent.ID, up bool) (map[edgeagent.ID]struct{}, error) {
	seen := map[edgeagent.ID]struct{}{root: {}}
	queue := []edgeagent.ID{root}
	push := func(ids ...edgeagent.ID) {
		for _, id := range ids {
			if _, ok := seen[id]; !ok && !id.IsZero() {
				seen[id] = struct{}{}
				queue = append(queue, id)
			}
		}
	}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		evs, err := w.eventsOf(x)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			switch {
			case e.FlowFileID == x && up:
				push(e.Parents...)
			case e.FlowFileID == x:
				push(e.Children...)
			case up && slices.Contains(e.Children, x):
				push(e.FlowFileID) // FORK or CLONE recorded on the parent
			case !up && slices.Contains(e.Parents, x):
				push(e.FlowFileID) // JOIN recorded on the child
			}
		}
	}
	return seen, nil
}

// Since returns the events whose Time is at or after since, in ID order
// (which is time order while the clock only moves forward), at most limit of
// them (limit <= 0: all). It starts reading at the first event that can
// qualify, found with one seek in the time index, so its cost does not grow
// with the number of older events.
func Since(tx *bolt.Tx, since time.Time, limit int) ([]Event, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, fmt.Errorf("listing provenance since %s: %w", since, err)
	}
	start, ok := sinceStart(bk, since)
	if !ok {
		return nil, nil
	}
	var out []Event
	c := bk.events.Cursor()
	for k, v := c.Seek(eventKey(start)); k != nil; k, v = c.Next() {
		h, err := decodeHeader(v, false)
		if err != nil {
			return nil, fmt.Errorf("listing provenance since %s: event %d: %w", since, binary.BigEndian.Uint64(k), err)
		}
		if h.Time.Before(since) {
			continue
		}
		e, err := decodeStored(k, v)
		if err != nil {
			return nil, fmt.Errorf("listing provenance since %s: %w", since, err)
		}
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// sinceStart returns the ID from which events can have a Time at or after
// since, and false when no stored event can.
func sinceStart(bk buckets, since time.Time) (uint64, bool) {
	var seek [8]byte
	binary.BigEndian.PutUint64(seek[:], sortableTime(since))
	k, _ := bk.time.Cursor().Seek(seek[:])
	if k == nil || len(k) != timeKeyLen {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[8:]), true
}

// After returns the events with an ID greater than id, in ID order, at most
// limit of them (limit <= 0: all). A reader that forwards provenance keeps
// the last ID it handled and calls After with it.
func After(tx *bolt.Tx, id uint64, limit int) ([]Event, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, fmt.Errorf("listing provenance after %d: %w", id, err)
	}
	if id == math.MaxUint64 {
		return nil, nil
	}
	var out []Event
	c := bk.events.Cursor()
	for k, v := c.Seek(eventKey(id + 1)); k != nil; k, v = c.Next() {
		e, err := decodeStored(k, v)
		if err != nil {
			return nil, fmt.Errorf("listing provenance after %d: %w", id, err)
		}
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// Latest returns the newest limit events (limit <= 0: all), oldest first and
// newest last.
func Latest(tx *bolt.Tx, limit int) ([]Event, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, fmt.Errorf("listing latest provenance: %w", err)
	}
	var out []Event
	c := bk.events.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		e, err := decodeStored(k, v)
		if err != nil {
			return nil, fmt.Errorf("listing latest provenance: %w", err)
		}
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	slices.Reverse(out)
	return out, nil
}

// ReadStats returns the statistics of the stored events.
func ReadStats(tx *bolt.Tx) (Stats, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return Stats{}, fmt.Errorf("reading provenance stats: %w", err)
	}
	st, err := bk.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("reading provenance stats: %w", err)
	}
	return st, nil
}
