package provenance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"edgeagent.dev"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// openDB opens a bbolt file in a temporary directory with the provenance
// buckets, and checks the file's consistency when the test ends.
func openDB(tb testing.TB) (*bolt.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "data.db")
	db := reopen(tb, path)
	tb.Cleanup(func() {
		if db := db; db != nil {
			checkDB(tb, db)
			_ = db.Close()
		}
	})
	return db, path
}

func reopen(tb testing.TB, path string) *bolt.DB {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	require.NoError(tb, err)
	require.NoError(tb, db.Update(EnsureBuckets))
	return db
}

func checkDB(tb testing.TB, db *bolt.DB) {
	tb.Helper()
	if db.Path() == "" { // closed
		return
	}
	require.NoError(tb, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}))
}

func appendEvents(tb testing.TB, db *bolt.DB, evs []Event) []Event {
	tb.Helper()
	require.NoError(tb, db.Update(func(tx *bolt.Tx) error { return Append(tx, evs) }))
	return evs
}

func view[T any](tb testing.TB, db *bolt.DB, f func(tx *bolt.Tx) (T, error)) T {
	tb.Helper()
	var out T
	require.NoError(tb, db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = f(tx)
		return err
	}))
	return out
}

func stats(tb testing.TB, db *bolt.DB) Stats {
	return view(tb, db, ReadStats)
}

// recount computes the Stats and the flowfile index from the event records,
// to compare with what the store keeps.
func recount(tb testing.TB, db *bolt.DB) (Stats, [][]byte, [][]byte) {
	tb.Helper()
	var st Stats
	var want, have [][]byte
	require.NoError(tb, db.View(func(tx *bolt.Tx) error {
		bk, err := openBuckets(tx)
		require.NoError(tb, err)
		st.LastID = bk.events.Sequence()
		require.NoError(tb, bk.events.ForEach(func(k, v []byte) error {
			var e Event
			require.NoError(tb, e.UnmarshalBinary(v))
			require.Equal(tb, binary.BigEndian.Uint64(k), e.ID)
			inv := involved(nil, e.FlowFileID, e.Parents, e.Children)
			for _, id := range inv {
				want = append(want, append(bytes.Clone(id[:]), k...))
			}
			if st.Count == 0 {
				st.FirstID, st.Oldest = e.ID, e.Time
			}
			st.Count++
			st.Bytes += storedSize(len(v), len(inv))
			if e.Time.After(st.Newest) {
				st.Newest = e.Time
			}
			return nil
		}))
		return bk.ff.ForEach(func(k, v []byte) error {
			require.Empty(tb, v)
			have = append(have, bytes.Clone(k))
			return nil
		})
	}))
	slices.SortFunc(want, bytes.Compare)
	return st, want, have
}

// requireConsistent checks Stats and the flowfile index against the records.
func requireConsistent(tb testing.TB, db *bolt.DB) Stats {
	tb.Helper()
	want, wantIdx, haveIdx := recount(tb, db)
	got := stats(tb, db)
	require.Equal(tb, want.Count, got.Count, "count")
	require.Equal(tb, want.Bytes, got.Bytes, "bytes")
	require.Equal(tb, want.FirstID, got.FirstID, "first id")
	require.Equal(tb, want.LastID, got.LastID, "last id")
	require.True(tb, want.Oldest.Equal(got.Oldest), "oldest %s != %s", want.Oldest, got.Oldest)
	if want.Count > 0 { // Newest is a high-water mark; with forward time it is the max
		require.False(tb, got.Newest.Before(want.Newest), "newest %s < %s", got.Newest, want.Newest)
	} else {
		require.True(tb, got.Newest.IsZero())
	}
	require.Equal(tb, wantIdx, haveIdx, "flowfile index")
	return got
}

var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// flowEvents makes the usual life of n flowfiles: CREATE, ATTRIBUTES_MODIFIED
// and SEND, starting at t.
func flowEvents(n int, t time.Time) []Event {
	evs := make([]Event, 0, 3*n)
	for i := range n {
		id := edgeagent.NewID()
		evs = append(evs, Event{
			Type: EventCreate, Time: t, FlowFileID: id, Component: "frames", ComponentType: "CaptureFrame",
			Updated: map[string]string{
				"filename": fmt.Sprintf("frame-%06d.jpg", i), "mime.type": "image/jpeg", "agent.id": "jetson-01",
				"capture.time": t.Format(time.RFC3339Nano), "camera": "v4l2:///dev/video0",
			},
			ContentSize: 48213, LineageStart: t,
		}, Event{
			Type: EventAttributesModified, Time: t, FlowFileID: id, Component: "detect", ComponentType: "ONNXInference",
			Updated:     map[string]string{"inference.model.sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "inference.provider": "CUDA"},
			ContentSize: 48213, LineageStart: t, Details: "model sha256 9f86d081",
		}, Event{
			Type: EventSend, Time: t, FlowFileID: id, Component: "publish", ComponentType: "PublishMQTT",
			Relationship: "success", TransitURI: "tcp://central:1883/edge/jetson-01/frames", ContentSize: 48213, LineageStart: t,
		})
	}
	return evs
}

func TestNotInitialized(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		return Append(tx, []Event{{Type: EventCreate, FlowFileID: edgeagent.NewID()}})
	})
	require.ErrorIs(t, err, ErrNotInitialized)
	require.ErrorIs(t, db.View(func(tx *bolt.Tx) error { _, err := ReadStats(tx); return err }), ErrNotInitialized)
	require.ErrorIs(t, db.View(func(tx *bolt.Tx) error { _, err := Since(tx, base, 0); return err }), ErrNotInitialized)
	require.ErrorIs(t, db.View(func(tx *bolt.Tx) error { _, err := Lineage(tx, edgeagent.NewID()); return err }), ErrNotInitialized)
	// EnsureBuckets is idempotent.
	require.NoError(t, db.Update(EnsureBuckets))
	require.NoError(t, db.Update(EnsureBuckets))
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			require.True(t, bytes.HasPrefix(name, []byte("prov.")), "%s", name)
			return nil
		})
		return nil
	}))
}

func TestAppendByFlowFile(t *testing.T) {
	db, _ := openDB(t)
	require.Equal(t, Stats{}, stats(t, db))

	first := appendEvents(t, db, flowEvents(10, base))
	second := appendEvents(t, db, flowEvents(10, base.Add(time.Second)))
	all := append(slices.Clone(first), second...)
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.ID, "IDs are assigned in order")
	}

	st := requireConsistent(t, db)
	require.Equal(t, int64(60), st.Count)
	require.Equal(t, uint64(1), st.FirstID)
	require.Equal(t, uint64(60), st.LastID)
	require.True(t, base.Equal(st.Oldest))
	require.True(t, base.Add(time.Second).Equal(st.Newest))

	for _, want := range []Event{all[0], all[31], all[59]} {
		got, ok, err := getEvent(t, db, want.ID)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, canonical(want), got)
	}
	_, ok, err := getEvent(t, db, 61)
	require.NoError(t, err)
	require.False(t, ok)

	ff := second[3].FlowFileID
	got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, ff) })
	require.Equal(t, []Event{canonical(second[3]), canonical(second[4]), canonical(second[5])}, got)
	require.Empty(t, view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, edgeagent.NewID()) }))

	// A FORK shows up under the parent and under every child.
	parent, kids := edgeagent.NewID(), ids(2)
	fork := appendEvents(t, db, []Event{{Type: EventFork, Time: base, FlowFileID: parent, Children: kids, Component: "split", ComponentType: "SplitText"}})
	for _, id := range append([]edgeagent.ID{parent}, kids...) {
		got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, id) })
		require.Equal(t, []Event{canonical(fork[0])}, got)
	}
	requireConsistent(t, db)
}

func getEvent(tb testing.TB, db *bolt.DB, id uint64) (e Event, ok bool, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		e, ok, err = Get(tx, id)
		return err
	})
	return e, ok, err
}

func TestAppendRejectsInvalid(t *testing.T) {
	db, _ := openDB(t)
	appendEvents(t, db, flowEvents(1, base))
	for name, ev := range map[string]Event{
		"bad type":         {Type: "NOPE", FlowFileID: edgeagent.NewID()},
		"zero flowfile id": {Type: EventDrop},
	} {
		t.Run(name, func(t *testing.T) {
			evs := append(flowEvents(1, base), ev)
			err := db.Update(func(tx *bolt.Tx) error {
				err := Append(tx, evs)
				require.Zero(t, evs[0].ID, "nothing assigned")
				return err
			})
			require.ErrorIs(t, err, ErrInvalidEvent)
		})
	}
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Append(tx, nil) }))
	require.ErrorContains(t, db.View(func(tx *bolt.Tx) error { return Append(tx, flowEvents(1, base)) }), "not writable")
	st := requireConsistent(t, db)
	require.Equal(t, int64(3), st.Count)
}

func TestLineage(t *testing.T) {
	db, _ := openDB(t)
	// a --FORK--> b1, b2 ; b1 --CLONE--> c ; (c, x) --JOIN--> d ; z unrelated.
	a, b1, b2, c, x, d, z := edgeagent.NewID(), edgeagent.NewID(), edgeagent.NewID(), edgeagent.NewID(),
		edgeagent.NewID(), edgeagent.NewID(), edgeagent.NewID()
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	evs := appendEvents(t, db, []Event{
		{Type: EventReceive, Time: at(0), FlowFileID: a, Component: "in", ComponentType: "GetFile"},  // 1
		{Type: EventCreate, Time: at(0), FlowFileID: z, Component: "gen", ComponentType: "Generate"}, // 2
		{Type: EventCreate, Time: at(0), FlowFileID: x, Component: "gen", ComponentType: "Generate"}, // 3
	})
	evs = append(evs, appendEvents(t, db, []Event{
		{Type: EventFork, Time: at(1), FlowFileID: a, Children: []edgeagent.ID{b1, b2}, Component: "split", ComponentType: "SplitText"}, // 4
		{Type: EventDrop, Time: at(1), FlowFileID: a, Component: "split", ComponentType: "SplitText"},                                   // 5
		{Type: EventRoute, Time: at(1), FlowFileID: b2, Relationship: "other", Component: "route", ComponentType: "RouteOnAttribute"},   // 6
		{Type: EventClone, Time: at(2), FlowFileID: b1, Children: []edgeagent.ID{c}, Component: "route", ComponentType: "RouteOnAttribute"},
		{Type: EventSend, Time: at(3), FlowFileID: b1, Component: "publish", ComponentType: "PublishMQTT"},                              // 8
		{Type: EventJoin, Time: at(4), FlowFileID: d, Parents: []edgeagent.ID{c, x}, Component: "merge", ComponentType: "MergeContent"}, // 9
		{Type: EventDrop, Time: at(4), FlowFileID: c, Component: "merge", ComponentType: "MergeContent"},                                // 10
		{Type: EventSend, Time: at(5), FlowFileID: d, Component: "publish", ComponentType: "PublishMQTT"},                               // 11
		{Type: EventSend, Time: at(5), FlowFileID: z, Component: "publish", ComponentType: "PublishMQTT"},                               // 12
	})...)
	byID := func(ids ...uint64) []Event {
		var out []Event
		for _, id := range ids {
			out = append(out, canonical(evs[id-1]))
		}
		return out
	}
	sorted := func(ids ...edgeagent.ID) []edgeagent.ID {
		slices.SortFunc(ids, func(a, b edgeagent.ID) int { return bytes.Compare(a[:], b[:]) })
		return ids
	}
	for _, tc := range []struct {
		name   string
		root   edgeagent.ID
		files  []edgeagent.ID
		events []Event
	}{
		// From the middle: ancestor a through the FORK, descendants c (CLONE)
		// and d (JOIN). Not the sibling b2, the other join input x, or z.
		{"middle", b1, sorted(a, b1, c, d), byID(1, 4, 5, 7, 8, 9, 10, 11)},
		{"clone", c, sorted(a, b1, c, d), byID(1, 4, 5, 7, 8, 9, 10, 11)},
		{"root", a, sorted(a, b1, b2, c, d), byID(1, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"leaf", d, sorted(a, b1, c, x, d), byID(1, 3, 4, 5, 7, 8, 9, 10, 11)},
		{"sibling", b2, sorted(a, b2), byID(1, 4, 5, 6)},
		{"unrelated", z, []edgeagent.ID{z}, byID(2, 12)},
		{"unknown", edgeagent.ID{1}, []edgeagent.ID{{1}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := view(t, db, func(tx *bolt.Tx) (*LineageGraph, error) { return Lineage(tx, tc.root) })
			require.Equal(t, tc.root, l.Root)
			require.Equal(t, tc.files, l.FlowFiles)
			require.Equal(t, tc.events, l.Events)
		})
	}
}

func TestSince(t *testing.T) {
	db, _ := openDB(t)
	// 50 batches of 20 events, one second apart, times rising within a batch.
	var all []Event
	for b := range 50 {
		evs := make([]Event, 20)
		for i := range evs {
			evs[i] = Event{Type: EventRoute, FlowFileID: edgeagent.NewID(),
				Time: base.Add(time.Duration(b)*time.Second + time.Duration(i)*time.Millisecond)}
		}
		all = append(all, appendEvents(t, db, evs)...)
	}
	brute := func(since time.Time, limit int) []Event {
		var out []Event
		for _, e := range all {
			if !e.Time.Before(since) && (limit <= 0 || len(out) < limit) {
				out = append(out, canonical(e))
			}
		}
		return out
	}
	check := func(since time.Time, limit int) {
		t.Helper()
		got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Since(tx, since, limit) })
		require.Equal(t, brute(since, limit), got, "since %s limit %d", since, limit)
	}
	for _, since := range []time.Time{
		{}, base.Add(-time.Hour), base, base.Add(time.Millisecond), base.Add(10*time.Second + 5*time.Millisecond),
		base.Add(49*time.Second + 19*time.Millisecond), base.Add(49*time.Second + 20*time.Millisecond), base.Add(time.Hour),
	} {
		for _, limit := range []int{0, 1, 7, 1000} {
			check(since, limit)
		}
	}

	// The start is found by a seek, not by scanning from the first event:
	// since inside batch 40 starts at batch 40's first event.
	start := view(t, db, func(tx *bolt.Tx) (uint64, error) {
		bk, err := openBuckets(tx)
		require.NoError(t, err)
		id, ok := sinceStart(bk, base.Add(40*time.Second+3*time.Millisecond))
		require.True(t, ok)
		return id, nil
	})
	require.Equal(t, all[40*20].ID, start)

	// The clock steps back an hour: results stay right (every event with a
	// late enough time, in ID order), and no time index entry was added.
	var back []Event
	for i := range 10 {
		back = append(back, Event{Type: EventRoute, FlowFileID: edgeagent.NewID(), Time: base.Add(-time.Hour + time.Duration(i)*time.Second)})
	}
	all = append(all, appendEvents(t, db, back)...)
	all = append(all, appendEvents(t, db, flowEvents(5, base.Add(time.Minute)))...)
	for _, since := range []time.Time{base.Add(-time.Hour), base.Add(-time.Hour + 5*time.Second), base, base.Add(30 * time.Second), base.Add(time.Minute)} {
		check(since, 0)
		check(since, 3)
	}
	requireConsistent(t, db)
}

func TestLatestAfter(t *testing.T) {
	db, _ := openDB(t)
	require.Empty(t, view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Latest(tx, 5) }))
	all := appendEvents(t, db, flowEvents(4, base))
	for i := range all {
		all[i] = canonical(all[i])
	}
	got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Latest(tx, 5) })
	require.Equal(t, all[7:], got)
	got = view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Latest(tx, 0) })
	require.Equal(t, all, got)
	got = view(t, db, func(tx *bolt.Tx) ([]Event, error) { return After(tx, 3, 2) })
	require.Equal(t, all[3:5], got)
	got = view(t, db, func(tx *bolt.Tx) ([]Event, error) { return After(tx, 0, 0) })
	require.Equal(t, all, got)
	require.Empty(t, view(t, db, func(tx *bolt.Tx) ([]Event, error) { return After(tx, 12, 0) }))
}

func prune(tb testing.TB, db *bolt.DB, now time.Time, maxAge time.Duration, maxSize int64, limit int) int {
	tb.Helper()
	var n int
	require.NoError(tb, db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = Prune(tx, now, maxAge, maxSize, limit)
		return err
	}))
	return n
}

func timeIndexLen(tb testing.TB, db *bolt.DB) int {
	return view(tb, db, func(tx *bolt.Tx) (int, error) { return tx.Bucket(bucketTime).Stats().KeyN, nil })
}

func TestPruneByAge(t *testing.T) {
	db, _ := openDB(t)
	var batches [][]Event
	for m := range 10 { // one batch a minute, with forks so index entries are shared
		evs := flowEvents(5, base.Add(time.Duration(m)*time.Minute))
		evs = append(evs, Event{Type: EventFork, Time: base.Add(time.Duration(m) * time.Minute), FlowFileID: evs[0].FlowFileID, Children: ids(3)})
		batches = append(batches, appendEvents(t, db, evs))
	}
	require.Equal(t, 10, timeIndexLen(t, db))
	now := base.Add(10 * time.Minute)

	require.Zero(t, prune(t, db, now, time.Hour, 0, 0), "nothing old enough")
	require.Zero(t, prune(t, db, now, 0, 0, 0), "no limits")

	// Older than 5m30s: the first 5 batches, at most 20 events per call.
	var total int
	for {
		n := prune(t, db, now, 5*time.Minute+30*time.Second, 0, 20)
		require.LessOrEqual(t, n, 20)
		if n == 0 {
			break
		}
		total += n
		requireConsistent(t, db)
	}
	require.Equal(t, 5*16, total)
	st := requireConsistent(t, db)
	require.Equal(t, int64(5*16), st.Count)
	require.Equal(t, batches[5][0].ID, st.FirstID)
	require.True(t, batches[5][0].Time.Equal(st.Oldest))
	require.Equal(t, 5, timeIndexLen(t, db))

	// The pruned flowfiles are gone from the index; the others are intact.
	gone := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, batches[4][15].Children[0]) })
	require.Empty(t, gone)
	kept := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, batches[5][15].Children[0]) })
	require.Equal(t, []Event{canonical(batches[5][15])}, kept)
	got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Since(tx, time.Time{}, 1) })
	require.Equal(t, []Event{canonical(batches[5][0])}, got)

	// Everything: the store is empty, IDs go on, the time index restarts.
	require.Equal(t, 80, prune(t, db, now.Add(time.Hour), time.Minute, 0, 0))
	st = requireConsistent(t, db)
	require.Equal(t, Stats{LastID: 160}, st)
	require.Zero(t, timeIndexLen(t, db))
	require.Empty(t, view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Since(tx, time.Time{}, 0) }))

	again := appendEvents(t, db, flowEvents(1, base)) // an older time than before
	require.Equal(t, uint64(161), again[0].ID)
	st = requireConsistent(t, db)
	require.Equal(t, uint64(161), st.FirstID)
	require.True(t, base.Equal(st.Newest))
	got = view(t, db, func(tx *bolt.Tx) ([]Event, error) { return Since(tx, base, 0) })
	require.Len(t, got, 3)
}

// sizes returns the storedSize of every event, by ID.
func sizes(tb testing.TB, db *bolt.DB) map[uint64]int64 {
	out := map[uint64]int64{}
	require.NoError(tb, db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var e Event
			require.NoError(tb, e.UnmarshalBinary(v))
			out[e.ID] = storedSize(len(v), len(involved(nil, e.FlowFileID, e.Parents, e.Children)))
			return nil
		})
	}))
	return out
}

func TestPruneBySize(t *testing.T) {
	db, _ := openDB(t)
	for m := range 20 {
		appendEvents(t, db, flowEvents(10, base.Add(time.Duration(m)*time.Second)))
	}
	st := requireConsistent(t, db)
	require.Equal(t, int64(600), st.Count)
	size := sizes(t, db)
	maxSize := st.Bytes / 4

	n := prune(t, db, base, 0, maxSize, 100)
	require.Equal(t, 100, n, "limit holds")
	st = requireConsistent(t, db)
	require.Greater(t, st.Bytes, maxSize)

	n = prune(t, db, base, 0, maxSize, 0)
	require.Positive(t, n)
	st = requireConsistent(t, db)
	require.LessOrEqual(t, st.Bytes, maxSize)
	require.Equal(t, uint64(601)-uint64(st.Count), st.FirstID)
	// Oldest first, and no more than needed: the last event pruned would
	// not have fitted.
	require.Greater(t, st.Bytes+size[st.FirstID-1], maxSize)
	require.Zero(t, prune(t, db, base, 0, maxSize, 0))
}

func TestPruneByAgeAndSize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxAge    time.Duration
		sizeShare int64 // maxSize = total bytes / sizeShare
		minLeft   int64
		maxLeft   int64
	}{
		{"age wins", 5 * time.Second, 2, 150, 150},
		// IDs from 128 on take one byte more: the second half is a bit larger.
		{"size wins", 15 * time.Second, 2, 290, 299},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t)
			for m := range 20 { // 30 events of equal size a second
				appendEvents(t, db, flowEvents(10, base.Add(time.Duration(m)*time.Second)))
			}
			maxSize := stats(t, db).Bytes / tc.sizeShare
			now := base.Add(20 * time.Second)
			prune(t, db, now, tc.maxAge, maxSize, 0)
			st := requireConsistent(t, db)
			require.LessOrEqual(t, st.Bytes, maxSize)
			require.False(t, st.Oldest.Before(now.Add(-tc.maxAge)), "oldest %s", st.Oldest)
			require.GreaterOrEqual(t, st.Count, tc.minLeft)
			require.LessOrEqual(t, st.Count, tc.maxLeft)
		})
	}
}

func TestPruneCorruptEvent(t *testing.T) {
	db, _ := openDB(t)
	evs := appendEvents(t, db, flowEvents(2, base))
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for _, e := range evs[:2] {
			require.NoError(t, tx.Bucket(bucketEvents).Put(eventKey(e.ID), []byte{9, 9, 9}))
		}
		return nil
	}))
	_, _, err := getEvent(t, db, evs[0].ID)
	require.ErrorIs(t, err, ErrCorruptEvent)
	require.ErrorIs(t, db.View(func(tx *bolt.Tx) error { _, err := ByFlowFile(tx, evs[0].FlowFileID); return err }), ErrCorruptEvent)
	require.ErrorIs(t, db.View(func(tx *bolt.Tx) error { _, err := Since(tx, base, 0); return err }), ErrCorruptEvent)

	// Unreadable events at the head are removed even when no limit is due,
	// one per call here; Oldest is unknown while the head is unreadable.
	require.Equal(t, 1, prune(t, db, base, 0, 0, 1))
	st := stats(t, db)
	require.Equal(t, evs[1].ID, st.FirstID)
	require.True(t, st.Oldest.IsZero())
	require.Equal(t, 1, prune(t, db, base, 0, 0, 1))
	require.Zero(t, prune(t, db, base, 0, 0, 1))
	st = stats(t, db)
	require.Equal(t, int64(4), st.Count)
	require.Equal(t, evs[2].ID, st.FirstID)
	require.True(t, base.Equal(st.Oldest))

	// Readers skip the index entries left behind.
	got := view(t, db, func(tx *bolt.Tx) ([]Event, error) { return ByFlowFile(tx, evs[0].FlowFileID) })
	require.Equal(t, []Event{canonical(evs[2])}, got)
	l := view(t, db, func(tx *bolt.Tx) (*LineageGraph, error) { return Lineage(tx, evs[0].FlowFileID) })
	require.Equal(t, []Event{canonical(evs[2])}, l.Events)
}

func TestReopen(t *testing.T) {
	db, path := openDB(t)
	appendEvents(t, db, flowEvents(3, base))
	require.Equal(t, 9, prune(t, db, base.Add(time.Hour), time.Minute, 0, 0))
	appendEvents(t, db, flowEvents(2, base.Add(time.Hour)))
	before := requireConsistent(t, db)
	checkDB(t, db)
	require.NoError(t, db.Close())

	db2 := reopen(t, path)
	defer db2.Close()
	require.Equal(t, before, stats(t, db2))
	evs := appendEvents(t, db2, flowEvents(1, base.Add(2*time.Hour)))
	require.Equal(t, []uint64{16, 17, 18}, []uint64{evs[0].ID, evs[1].ID, evs[2].ID})
	st := requireConsistent(t, db2)
	require.Equal(t, int64(9), st.Count)
	require.Equal(t, uint64(10), st.FirstID)
	require.Equal(t, uint64(18), st.LastID)
	got := view(t, db2, func(tx *bolt.Tx) ([]Event, error) { return Since(tx, base.Add(90*time.Minute), 0) })
	require.Equal(t, []Event{canonical(evs[0]), canonical(evs[1]), canonical(evs[2])}, got)
	checkDB(t, db2)
}
