// Package edgeagent holds the contracts every part of the agent is built on:
// the FlowFile record, the Processor and ProcessSession interfaces, relationship
// and property specifications, the processor Registry, the expression language
// used in property values, configuration errors and the sentinel errors.
//
// The package depends on the standard library only. The engine
// (internal/engine) implements ProcessSession on top of the durable repository
// (buffer), and processors (processors/...) implement Processor.
//
// Call order for a processor instance, driven by the engine:
//
//  1. ProcessorSpec.New checks the configuration. It does no I/O and starts no
//     goroutines.
//  2. Start (if the processor implements Starter) opens connections, files and
//     devices. It is called once, before the first OnTrigger.
//  3. OnTrigger is called repeatedly, from up to schedule.concurrency goroutines
//     at once, each time with its own ProcessSession.
//  4. Stop (if the processor implements Stopper) is called once after the last
//     OnTrigger has returned; every goroutine the processor started has exited
//     when Stop returns.
package edgeagent
