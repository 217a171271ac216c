// Package engine runs a flow: it builds processor nodes and durable queues
// from a validated configuration, schedules the processors' tasks
// (timer-driven with schedule.period, event-driven on input, several tasks
// per processor with schedule.concurrency, yielding when idle and penalizing
// on failure), implements the ProcessSession on top of the buffer
// repository, and drains on shutdown.
//
// The Agent type adds the process-level behaviour: opening the repository,
// hot reload of the flow file (an invalid new flow keeps the running one),
// and the local HTTP API.
package engine
