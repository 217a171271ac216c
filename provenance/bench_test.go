package provenance

import (
	"edgeagent.dev"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppend measures Append the way the engine uses it: one write
// transaction per batch of 3,000 events on a bbolt file. Each transaction
// holds the CREATE (five attributes) of 1,000 new flowfiles, the
// ATTRIBUTES_MODIFIED of the 1,000 created one transaction earlier and the
// SEND of the 1,000 before those, as a pipeline of three processors would.
// NoSync leaves the fsync out, so the number is the CPU and page cost of
// provenance alone; the "sync" variant adds one fsync per transaction.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "sync"
		}
		b.Run(name, func(b *testing.B) {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "data.db"), 0o600, &bolt.Options{NoSync: !sync})
			require.NoError(b, err)
			defer db.Close()
			require.NoError(b, db.Update(EnsureBuckets))
			const perStage = 1000
			// Three generations of flowfiles: being created, being
			// modified, being sent.
			gens := [3][]Event{flowEvents(perStage, base), flowEvents(perStage, base), flowEvents(perStage, base)}
			batch := make([]Event, 0, 3*perStage)
			b.ReportAllocs()
			events := 0
			for i := 0; b.Loop(); i++ {
				now := base.Add(time.Duration(i) * time.Millisecond)
				gens[0], gens[1], gens[2] = gens[2], gens[0], gens[1]
				created := gens[0]
				for j := 0; j < len(created); j += 3 {
					id := edgeagent.NewID()
					for k := range 3 {
						created[j+k].FlowFileID = id
					}
				}
				batch = batch[:0]
				for j := 0; j < 3*perStage; j += 3 {
					batch = append(batch, gens[0][j], gens[1][j+1], gens[2][j+2])
				}
				for j := range batch {
					batch[j].Time = now
				}
				require.NoError(b, db.Update(func(tx *bolt.Tx) error { return Append(tx, batch) }))
				events += len(batch)
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
			require.NoError(b, db.View(func(tx *bolt.Tx) error {
				st, err := ReadStats(tx)
				b.ReportMetric(float64(tx.Size())/float64(events), "file-B/event")
				b.ReportMetric(float64(st.Bytes)/float64(events), "stats-B/event")
				return err
			}))
		})
	}
}

// fill appends n events in batches of 3,000, one second of event time per
// batch.
func fill(b *testing.B, db *bolt.DB, n int) {
	b.Helper()
	for i := 0; i*3000 < n; i++ {
		evs := flowEvents(1000, base.Add(time.Duration(i)*time.Second))
		require.NoError(b, db.Update(func(tx *bolt.Tx) error { return Append(tx, evs) }))
	}
}

// BenchmarkSince queries the last 100 events of a store of 1.5 million: the
// start is found with a seek, so the cost does not depend on the store size.
func BenchmarkSince(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "data.db"), 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	require.NoError(b, err)
	defer db.Close()
	require.NoError(b, db.Update(EnsureBuckets))
	const n = 1_500_000
	fill(b, db, n)
	since := base.Add(time.Duration(n/3000-1) * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		require.NoError(b, db.View(func(tx *bolt.Tx) error {
			evs, err := Since(tx, since, 100)
			if len(evs) != 100 {
				b.Fatalf("got %d events", len(evs))
			}
			return err
		}))
	}
}

// BenchmarkLineage asks for the lineage of a flowfile in a store of 300,000
// events: it reads only that flowfile's events through the index.
func BenchmarkLineage(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "data.db"), 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	require.NoError(b, err)
	defer db.Close()
	require.NoError(b, db.Update(EnsureBuckets))
	fill(b, db, 300_000)
	var root Event
	require.NoError(b, db.View(func(tx *bolt.Tx) error {
		e, _, err := Get(tx, 150_001)
		root = e
		return err
	}))
	b.ReportAllocs()
	for b.Loop() {
		require.NoError(b, db.View(func(tx *bolt.Tx) error {
			l, err := Lineage(tx, root.FlowFileID)
			if err == nil && len(l.Events) != 3 {
				b.Fatalf("got %d events", len(l.Events))
			}
			return err
		}))
	}
}
