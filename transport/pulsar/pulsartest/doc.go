// Package pulsartest is a stand-in Apache Pulsar broker for tests: it speaks
// the Pulsar binary protocol (PulsarApi.proto, protocol version 20) over TCP
// or TLS on a loopback port, so tests drive the real pulsar-client-go
// against it. It is a test helper: tests anywhere may import it, non-test
// code never does.
//
// What it implements: CONNECT/CONNECTED with protocol version negotiation and
// token authentication; PARTITIONED_METADATA (every topic is
// non-partitioned); LOOKUP (always Connect to itself); PRODUCER with
// producer name assignment and last_sequence_id; SEND with checksum checks,
// de-duplication by producer name and sequence id (as a broker with
// de-duplication enabled: a SEND whose sequence id is at or below the
// producer's last persisted one is acknowledged with message id -1:-1 and
// not stored) and SEND_RECEIPT/SEND_ERROR; SUBSCRIBE for exclusive, shared,
// failover and key_shared subscriptions with durable cursors, FLOW permits,
// MESSAGE with redelivery_count, individual and cumulative ACK,
// REDELIVER_UNACKNOWLEDGED_MESSAGES, CLOSE_PRODUCER/CLOSE_CONSUMER in both
// directions, UNSUBSCRIBE, GET_LAST_MESSAGE_ID, GET_TOPICS_OF_NAMESPACE and
// PING/PONG.
//
// What it does not: partitioned topics, schemas, transactions, chunking
// reassembly checks, seek, sticky key ranges, retention limits. Entries are
// stored as the producer sent them (compressed batches included) and handed
// to consumers unchanged; Messages decodes them.
//
// Knobs: DelaySends, FailSends, RequireToken, Stop and Restart (state is
// kept; Restart listens on the same port), and the inspection methods
// Messages, DuplicatesDropped, LastSequenceID and Backlog.
package pulsartest
