// Package c2 is the agent's command and control: heartbeats that describe
// the agent (identity, flow, queues, repository, device) and operations an
// operator sends back (update configuration, update asset, describe,
// restart, ...), each acknowledged with its result.
//
// Two channels carry it; agent.c2.protocol picks exactly one, and
// operations are taken only from that one:
//
//   - http: the Apache NiFi MiNiFi C2 protocol. The agent POSTs a
//     C2Heartbeat to agent.c2.url; the server answers with a
//     C2HeartbeatResponse whose requestedOperations the agent runs, and
//     each result is POSTed as a C2OperationAck to agent.c2.ack_url. Field
//     names follow nifi's c2-protocol-api, so an existing MiNiFi C2 server
//     can manage the agent; edgeagent's extra fields (queue backpressure,
//     device temperatures, asset sha256s) travel under the "edgeagent" key.
//   - mqtt: the same JSON documents on the central broker:
//     c2/<agent.id>/heartbeat (retained), operations from
//     c2/<agent.id>/operations and c2/class/<agent_class>/operations, acks
//     to c2/<agent.id>/acks.
//
// A Client runs in its own goroutine (Run) next to the engine. It reads the
// agent through the Agent interface (engine.Agent implements it) and
// changes the flow only through the hot-reload path: a new flow is staged,
// validated, swapped in with a rename (the previous file kept beside it as
// FLOW.previous), reloaded, and put back automatically when it does not
// reach a running state within agent.c2.update_timeout. Queued flowfiles
// stay in the repository throughout. Operations run one at a time.
package c2
