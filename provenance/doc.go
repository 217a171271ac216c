// Package provenance records what happened to every flowfile: NiFi-style
// provenance events (CREATE, RECEIVE, FORK, SEND, DROP, ...), their compact
// binary encoding, the indexes that answer lineage and time-range queries, and
// retention by age and size.
//
// The package does not own a database. The durable repository (package
// buffer) owns the single *bolt.DB and writes events inside the same bbolt
// write transaction that commits the session that caused them, so every
// function here works on a *bolt.Tx the caller gives it:
//
//  1. EnsureBuckets once, in a write transaction, when the repository opens.
//  2. Append in a session's commit transaction. It assigns increasing event
//     IDs and writes each event, its flowfile index entries and the running
//     statistics.
//  3. Prune from time to time, in small write transactions of its own, to
//     enforce retention (oldest events first).
//  4. Get, ByFlowFile, Lineage, Since, After, Latest and ReadStats in read (or
//     write) transactions.
//
// The functions hold no state between calls and are safe to call from many
// goroutines as far as bbolt allows: any number of read transactions, one
// write transaction at a time. Events returned by the read functions are
// copies and stay valid after the transaction ends.
//
// # Storage layout
//
// All bucket names start with "prov.":
//
//	prov.events  eventID (8 bytes, big endian) -> encoded Event (see MarshalBinary)
//	prov.ff      flowfileID (16) + eventID (8)  -> empty; one entry for every
//	             flowfile an event involves: its FlowFileID, Parents and Children
//	prov.time    highWaterTime (8) + eventID (8) -> empty; one entry per Append
//	             call whose events raised the highest event time seen so far
//	prov.meta    "stats" -> Stats (one small record, rewritten once per Append)
//
// Event IDs come from the sequence of prov.events, so they keep increasing
// across restarts and after pruning. Keys of prov.events and prov.time only
// ever grow, so those buckets are written with a fill percent of 1.0.
//
// Since finds its starting event with one B+tree seek in prov.time: an entry
// (T, id) says that every event before id has a time below T. That stays true
// when the wall clock steps backwards, so time-range queries are correct
// whatever the clock does; they are only slower to start after such a step.
//
// # Lineage conventions
//
// FORK is recorded on the parent with Children set to the new flowfiles (the
// children also carry the parent in their FlowFile.Parents); JOIN is recorded
// on the new child with Parents set to its inputs; CLONE is recorded on the
// original with Children set to the clone. Lineage follows all of these in
// both directions.
package provenance
