// Package processors holds the built-in processors of the agent: one file per
// processor, each exposing a spec constructor (GetFileSpec, PutFileSpec, ...)
// that returns the edgeagent.ProcessorSpec the registry and the flow
// validator use. processors/all registers every one of them.
//
// The processors follow Apache NiFi's semantics unless their description says
// otherwise. Property keys are NiFi's property names in snake_case.
//
// Rules every processor here keeps:
//
//   - ProcessorSpec.New only checks the configuration: no I/O, no goroutines.
//     I/O starts in Start or OnTrigger.
//   - A processor keeps no per-trigger state in its fields: OnTrigger may run
//     on several goroutines at once. Shared state (GetFile's in-flight set) is
//     guarded by a mutex.
//   - A flowfile that cannot be processed goes to the failure relationship
//     with the error.message attribute; nothing is dropped silently.
//   - A processor with nothing to do calls ProcessContext.Yield and returns nil.
package processors
