package buffer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/provenance"
)

// openTest opens a repository in a temporary directory and, at cleanup,
// closes it and checks the file's consistency (bbolt's own Check).
func openTest(t *testing.T, dir string, opts Options) *Repo {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	r, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, r.Close())
		db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
		require.NoError(t, err)
		defer db.Close()
		require.NoError(t, db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}))
	})
	return r
}

func newFF(attrs map[string]string) *edgeagent.FlowFile {
	now := time.Now()
	if attrs == nil {
		attrs = map[string]string{}
	}
	return &edgeagent.FlowFile{ID: edgeagent.NewID(), Attributes: attrs, EntryTime: now, LineageStart: now}
}

// put commits flowfiles with content to q.
func put(t *testing.T, r *Repo, q *Queue, content []byte, ffs ...*edgeagent.FlowFile) {
	t.Helper()
	ch := &Change{}
	for _, ff := range ffs {
		if len(content) > 0 {
			ff.Claim, ff.Size = r.NewClaim(), int64(len(content))
			nc := NewContent{Claim: ff.Claim}
			for off := 0; off < len(content); off += ChunkSize {
				nc.Chunks = append(nc.Chunks, content[off:min(off+ChunkSize, len(content))])
			}
			ch.Content = append(ch.Content, nc)
		}
		ch.Add = append(ch.Add, Add{Queue: q, FlowFile: ff})
	}
	require.NoError(t, r.Commit(context.Background(), ch))
}

func readContent(t *testing.T, r *Repo, ff *edgeagent.FlowFile) []byte {
	t.Helper()
	b, err := io.ReadAll(r.ReadContent(ff.Claim, ff.Size))
	require.NoError(t, err)
	return b
}

func countBucket(t *testing.T, r *Repo, name []byte) int {
	t.Helper()
	n := 0
	require.NoError(t, r.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	}))
	return n
}

func TestCommitPollConsumeSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, Options{})
	require.NoError(t, err)
	q, err := r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	var ids []edgeagent.ID
	for range 5 {
		ff := newFF(map[string]string{"n": "x"})
		ids = append(ids, ff.ID)
		put(t, r, q, []byte("hello"), ff)
	}
	items, err := q.Poll(2)
	require.NoError(t, err)
	require.Len(t, items, 2)
	require.Equal(t, ids[0], items[0].FlowFile.ID)
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: items}))
	require.NoError(t, r.Close())

	r = openTest(t, dir, Options{})
	q, err = r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	count, size := q.Len()
	require.Equal(t, int64(3), count)
	require.Equal(t, int64(15), size)
	items, err = q.Poll(10)
	require.NoError(t, err)
	require.Len(t, items, 3)
	require.Equal(t, ids[2], items[0].FlowFile.ID)
	require.Equal(t, []byte("hello"), items[0].Content, "small content is stored inline")
	require.Equal(t, 0, countBucket(t, r, bucketContent))
	require.Equal(t, 0, countBucket(t, r, bucketClaims))
}

func TestLeasesAndPenalties(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	put(t, r, q, nil, newFF(nil), newFF(nil))
	a, err := q.Poll(1)
	require.NoError(t, err)
	b, err := q.Poll(5)
	require.NoError(t, err)
	require.Len(t, b, 1, "a leased flowfile is not handed out twice")
	require.NotEqual(t, a[0].FlowFile.ID, b[0].FlowFile.ID)
	none, err := q.Poll(5)
	require.NoError(t, err)
	require.Empty(t, none)
	q.Release(a, time.Hour)
	none, err = q.Poll(5)
	require.NoError(t, err)
	require.Empty(t, none, "a penalized flowfile is skipped")
	q.Release(b, 0)
	again, err := q.Poll(5)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, b[0].FlowFile.ID, again[0].FlowFile.ID)
}

func TestLargeContentChunksAndSharedClaims(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	big := make([]byte, 64<<20+17)
	_, _ = rand.Read(big)
	ff := newFF(nil)
	put(t, r, q, big, ff)
	require.Equal(t, 257, countBucket(t, r, bucketContent))
	items, err := q.Poll(1)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, readContent(t, r, items[0].FlowFile)))

	// A clone shares the claim: consuming the original keeps the content.
	clone := items[0].FlowFile.Copy()
	clone.ID = edgeagent.NewID()
	clone2 := clone.Copy()
	clone2.ID = edgeagent.NewID()
	require.NoError(t, r.Commit(context.Background(), &Change{Add: []Add{{Queue: q, FlowFile: clone}, {Queue: q, FlowFile: clone2}}}))
	require.Equal(t, 1, countBucket(t, r, bucketClaims), "shared content has a reference count")
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: items}))
	items, err = q.Poll(1)
	require.NoError(t, err)
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: items}))
	require.Equal(t, 0, countBucket(t, r, bucketClaims), "back to one reference")
	require.Equal(t, 257, countBucket(t, r, bucketContent))
	items, err = q.Poll(1)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, readContent(t, r, items[0].FlowFile)))
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: items}))
	require.Equal(t, 0, countBucket(t, r, bucketClaims))
	require.Equal(t, 0, countBucket(t, r, bucketContent))
}

func TestUnreferencedNewContentIsNotWritten(t *testing.T) {
	r := openTest(t, "", Options{})
	claim := r.NewClaim()
	require.NoError(t, r.Commit(context.Background(), &Change{Content: []NewContent{{Claim: claim, Chunks: [][]byte{[]byte("x")}}}}))
	require.Equal(t, 0, countBucket(t, r, bucketContent))
}

func TestPrioritizers(t *testing.T) {
	base := time.Unix(1700000000, 0)
	mk := func(age time.Duration, prio string) *edgeagent.FlowFile {
		ff := newFF(map[string]string{"name": prio})
		if prio != "-" {
			ff.Attributes[edgeagent.AttrPriority] = prio
		}
		ff.EntryTime = base.Add(age)
		return ff
	}
	tests := []struct {
		p    Prioritizer
		want []string
	}{
		{FIFO, []string{"10", "2", "b", "-", "-1.5", "a"}},
		{OldestFirst, []string{"-1.5", "2", "-", "b", "10", "a"}},
		{NewestFirst, []string{"a", "10", "b", "-", "2", "-1.5"}},
		{PriorityAttribute, []string{"-1.5", "2", "10", "a", "b", "-"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			r := openTest(t, "", Options{})
			q, err := r.Queue("q", QueueConfig{Prioritizer: tt.p})
			require.NoError(t, err)
			put(t, r, q, nil, mk(5, "10"), mk(2, "2"), mk(4, "b"), mk(3, "-"), mk(1, "-1.5"), mk(6, "a"))
			items, err := q.Poll(10)
			require.NoError(t, err)
			var got []string
			for _, it := range items {
				got = append(got, it.FlowFile.Attributes["name"])
			}
			require.Equal(t, tt.want, got)
			ts, err := q.Oldest()
			require.NoError(t, err)
			require.False(t, ts.IsZero())
		})
	}
}

func TestPrioritizerChangeReorders(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, Options{})
	require.NoError(t, err)
	q, err := r.Queue("q", QueueConfig{})
	require.NoError(t, err)
	a, b := newFF(map[string]string{"priority": "9"}), newFF(map[string]string{"priority": "1"})
	put(t, r, q, nil, a, b)
	require.NoError(t, r.Close())
	r = openTest(t, dir, Options{})
	q, err = r.Queue("q", QueueConfig{Prioritizer: PriorityAttribute})
	require.NoError(t, err)
	items, err := q.Poll(10)
	require.NoError(t, err)
	require.Equal(t, []edgeagent.ID{b.ID, a.ID}, []edgeagent.ID{items[0].FlowFile.ID, items[1].FlowFile.ID})
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: items}))
	count, _ := q.Len()
	require.Zero(t, count)
}

func events(t *testing.T, r *Repo) []provenance.Event {
	t.Helper()
	var evs []provenance.Event
	require.NoError(t, r.db.View(func(tx *bolt.Tx) error {
		var err error
		evs, err = provenance.Since(tx, time.Time{}, 0)
		return err
	}))
	return evs
}

func TestDropOldest(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("frames", QueueConfig{MaxCount: 3, DropOldest: true})
	require.NoError(t, err)
	var all []*edgeagent.FlowFile
	frame := bytes.Repeat([]byte("f"), InlineMax+1) // in the content store
	for range 5 {
		ff := newFF(nil)
		all = append(all, ff)
		put(t, r, q, frame, ff)
	}
	require.False(t, q.Full(), "a drop_oldest queue never applies backpressure")
	count, size := q.Len()
	require.Equal(t, int64(3), count)
	require.Equal(t, int64(3*len(frame)), size)
	items, err := q.Poll(10)
	require.NoError(t, err)
	require.Equal(t, all[2].ID, items[0].FlowFile.ID)
	var dropped []edgeagent.ID
	for _, e := range events(t, r) {
		if e.Type == provenance.EventDrop {
			dropped = append(dropped, e.FlowFileID)
			require.Equal(t, "frames", e.Component)
			require.Equal(t, "Connection", e.ComponentType)
		}
	}
	require.Equal(t, []edgeagent.ID{all[0].ID, all[1].ID}, dropped)
	require.Equal(t, 3, countBucket(t, r, bucketContent), "dropped content is deleted")
}

func TestDropOldestSkipsLeased(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("frames", QueueConfig{MaxCount: 1, DropOldest: true})
	require.NoError(t, err)
	first := newFF(nil)
	put(t, r, q, nil, first)
	leased, err := q.Poll(1)
	require.NoError(t, err)
	put(t, r, q, nil, newFF(nil))
	put(t, r, q, nil, newFF(nil))
	// The leased flowfile belongs to a running session: it is not dropped,
	// the newer ones are.
	count, _ := q.Len()
	require.Equal(t, int64(1), count)
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: leased}))
	count, _ = q.Len()
	require.Zero(t, count)
	require.Len(t, events(t, r), 2)
}

func TestBackpressureThresholds(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("q", QueueConfig{MaxCount: 2, MaxBytes: 1 << 20})
	require.NoError(t, err)
	put(t, r, q, nil, newFF(nil))
	require.False(t, q.Full())
	put(t, r, q, nil, newFF(nil))
	require.True(t, q.Full())
	q2, err := r.Queue("q2", QueueConfig{MaxCount: 100, MaxBytes: 10})
	require.NoError(t, err)
	put(t, r, q2, []byte("0123456789"), newFF(nil))
	require.True(t, q2.Full())
}

func TestExpiration(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	r := openTest(t, "", Options{Now: func() time.Time { return clock() }})
	q, err := r.Queue("q", QueueConfig{ExpireAfter: time.Minute, Prioritizer: NewestFirst})
	require.NoError(t, err)
	old := newFF(nil)
	put(t, r, q, []byte("old"), old)
	now = now.Add(50 * time.Second)
	young := newFF(nil)
	put(t, r, q, []byte("young"), young)
	now = now.Add(20 * time.Second)
	require.NoError(t, r.submit(context.Background(), &commitReq{housekeeping: true}))
	items, err := q.Poll(10)
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, young.ID, items[0].FlowFile.ID)
	var expired []edgeagent.ID
	for _, e := range events(t, r) {
		if e.Type == provenance.EventExpire {
			expired = append(expired, e.FlowFileID)
		}
	}
	require.Equal(t, []edgeagent.ID{old.ID}, expired)
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	_ = r
	start := time.Now()
	_, err := Open(dir, Options{})
	require.ErrorIs(t, err, edgeagent.ErrRepositoryLocked)
	require.Contains(t, err.Error(), "another edgeagent process is using this data directory")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestUnknownFormatAndCorruptFilesAreRefused(t *testing.T) {
	t.Run("format", func(t *testing.T) {
		dir := t.TempDir()
		r, err := Open(dir, Options{})
		require.NoError(t, err)
		require.NoError(t, r.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, 99))
		}))
		require.NoError(t, r.Close())
		before, err := os.ReadFile(filepath.Join(dir, FileName))
		require.NoError(t, err)
		_, err = Open(dir, Options{})
		require.ErrorIs(t, err, edgeagent.ErrRepositoryFormat)
		require.Contains(t, err.Error(), "format version 99")
		after, err := os.ReadFile(filepath.Join(dir, FileName))
		require.NoError(t, err)
		require.True(t, bytes.Equal(before, after), "the file is never overwritten")
	})
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		junk := bytes.Repeat([]byte("not a database "), 4096)
		require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), junk, 0o600))
		_, err := Open(dir, Options{})
		require.ErrorIs(t, err, edgeagent.ErrRepositoryCorrupt)
		require.Contains(t, err.Error(), "Move it aside")
		after, err := os.ReadFile(filepath.Join(dir, FileName))
		require.NoError(t, err)
		require.True(t, bytes.Equal(junk, after))
	})
	t.Run("damaged meta pages", func(t *testing.T) {
		dir := t.TempDir()
		r, err := Open(dir, Options{})
		require.NoError(t, err)
		require.NoError(t, r.Close())
		path := filepath.Join(dir, FileName)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		pageSize := os.Getpagesize()
		for _, off := range []int{16, pageSize + 16} { // inside both meta pages
			b[off+40] ^= 0xff
		}
		require.NoError(t, os.WriteFile(path, b, 0o600))
		_, err = Open(dir, Options{})
		require.True(t, errors.Is(err, edgeagent.ErrRepositoryCorrupt), "got %v", err)
	})
	t.Run("other bbolt file", func(t *testing.T) {
		dir := t.TempDir()
		db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("foreign")); return err }))
		require.NoError(t, db.Close())
		_, err = Open(dir, Options{})
		require.ErrorIs(t, err, edgeagent.ErrRepositoryCorrupt)
	})
}

func TestBudgetEvictsLossTolerantFirstThenFull(t *testing.T) {
	r := openTest(t, "", Options{MaxSize: 8 << 20, NoSync: true})
	tolerant, err := r.Queue("frames", QueueConfig{DropOldest: true})
	require.NoError(t, err)
	durable, err := r.Queue("records", QueueConfig{})
	require.NoError(t, err)
	chunk := make([]byte, 64<<10)
	// Fill with loss-tolerant frames beyond the budget.
	for range 150 {
		put(t, r, tolerant, chunk, newFF(nil))
		r.refreshUsage()
		require.NoError(t, r.submit(context.Background(), &commitReq{housekeeping: true}))
	}
	r.refreshUsage()
	require.False(t, r.Full(), "evicting loss-tolerant flowfiles keeps the repository under its budget")
	n, _ := tolerant.Len()
	require.Less(t, n, int64(150))
	var evicted int
	for _, e := range events(t, r) {
		if e.Type == provenance.EventDrop && e.Component == "frames" {
			evicted++
		}
	}
	require.Equal(t, int(150-n), evicted)

	// Durable records are never evicted: the repository reports full.
	for i := 0; i < 400 && !r.Full(); i++ {
		put(t, r, durable, chunk, newFF(nil))
		r.refreshUsage()
		require.NoError(t, r.submit(context.Background(), &commitReq{housekeeping: true}))
	}
	require.True(t, r.Full())
	dn, _ := durable.Len()
	items, err := durable.Poll(int(dn))
	require.NoError(t, err)
	require.Len(t, items, int(dn), "no durable flowfile was lost at the budget")
	used, fileSize, budget := r.Usage()
	require.LessOrEqual(t, used, budget+1<<20)
	t.Logf("used %d, file %d, budget %d, durable %d, tolerant left %d", used, fileSize, budget, dn, n)
}

func TestInlineContentMovesWithTheFlowFile(t *testing.T) {
	r := openTest(t, "", Options{})
	a, err := r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	b, err := r.Queue("b", QueueConfig{})
	require.NoError(t, err)
	ff := newFF(nil)
	put(t, r, a, []byte("small"), ff)
	items, err := a.Poll(1)
	require.NoError(t, err)
	require.Equal(t, []byte("small"), items[0].Content)
	// Moving it needs its content; the repository refuses a change without.
	err = r.Commit(context.Background(), &Change{Consume: items, Add: []Add{{Queue: b, FlowFile: items[0].FlowFile}}})
	require.ErrorContains(t, err, "content bytes were not given")
	c1 := items[0].FlowFile.Copy()
	c1.ID = edgeagent.NewID()
	require.NoError(t, r.Commit(context.Background(), &Change{
		Consume: items,
		Add:     []Add{{Queue: b, FlowFile: items[0].FlowFile}, {Queue: b, FlowFile: c1}},
		Content: []NewContent{{Claim: ff.Claim, Chunks: [][]byte{items[0].Content}}},
	}))
	moved, err := b.Poll(5)
	require.NoError(t, err)
	require.Len(t, moved, 2)
	for _, it := range moved {
		require.Equal(t, []byte("small"), it.Content)
	}
	require.Equal(t, 0, countBucket(t, r, bucketContent))
	require.Equal(t, 0, countBucket(t, r, bucketClaims))
}

func TestClaimIDsAreNeverReusedAfterReopen(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, Options{})
	require.NoError(t, err)
	q, err := r.Queue("a", QueueConfig{})
	require.NoError(t, err)
	ff := newFF(nil)
	put(t, r, q, []byte("inline content"), ff) // no content-store key
	require.NoError(t, r.Close())
	r = openTest(t, dir, Options{})
	require.Greater(t, r.NewClaim(), ff.Claim)
}

func TestPollSkipsTheLeasedHeadAndSeesReturnedItems(t *testing.T) {
	r := openTest(t, "", Options{})
	q, err := r.Queue("q", QueueConfig{})
	require.NoError(t, err)
	var ids []edgeagent.ID
	for range 6 {
		ff := newFF(nil)
		ids = append(ids, ff.ID)
		put(t, r, q, nil, ff)
	}
	idsOf := func(items []*Item) []edgeagent.ID {
		var out []edgeagent.ID
		for _, it := range items {
			out = append(out, it.FlowFile.ID)
		}
		return out
	}
	p1, err := q.Poll(2)
	require.NoError(t, err)
	p2, err := q.Poll(2)
	require.NoError(t, err)
	require.Equal(t, ids[2:4], idsOf(p2))
	// p1[0] goes back in place (a session returned it), p1[1] is consumed.
	require.NoError(t, r.Commit(context.Background(), &Change{Consume: p1[1:], Return: []Returned{{Item: p1[0]}}}))
	p3, err := q.Poll(10)
	require.NoError(t, err)
	require.Equal(t, []edgeagent.ID{ids[0], ids[4], ids[5]}, idsOf(p3))
	put(t, r, q, nil, newFF(nil))
	p4, err := q.Poll(10)
	require.NoError(t, err)
	require.Len(t, p4, 1, "an item appended after the leased head is found")
	q.Release(p2, 0)
	p5, err := q.Poll(10)
	require.NoError(t, err)
	require.Equal(t, ids[2:4], idsOf(p5))
}
