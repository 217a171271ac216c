// Package buffer is the durable repository: one bbolt file in the agent's
// data directory that holds the connection queues, the content store and (via
// package provenance) the provenance events.
//
// Every change a session makes is applied by Repo.Commit in one bbolt write
// transaction: inputs removed from their queues, outputs appended downstream,
// content written and reference counts changed, provenance events appended.
// Concurrent commits are grouped into one transaction (group commit), since a
// transaction costs one fsync. A crash at any instant therefore loses nothing
// and half-applies nothing.
//
// Queues live on disk: memory holds per-queue counters and the keys of
// flowfiles leased to running sessions, never the backlog itself.
//
// Concurrency: a Repo and its Queues are safe for concurrent use. Poll leases
// items to one caller until they are committed or released.
package buffer
