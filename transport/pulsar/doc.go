// Package pulsar delivers and receives flowfiles over Apache Pulsar with
// github.com/apache/pulsar-client-go: a Client (service URL, TLS and mutual
// TLS, token authentication from a file or the environment, timeouts), a
// Producer and a Consumer.
//
// Call order: NewClient (validates, reads the token once, opens nothing);
// Client.NewProducer and Client.Subscribe (these connect, within ctx and the
// OperationTimeout); SendAsync/Send/Flush and Receive/Ack/Nack from any
// number of goroutines; Producer.Close and Consumer.Close, or Client.Close,
// which closes everything the client made. Every goroutine the package or the
// library starts has stopped when Client.Close returns.
//
// Delivery: a Pending from SendAsync completes only when the broker sent a
// receipt (or the send failed), so a flowfile leaves its queue only after
// the broker stored it. On a lost connection the library reconnects with
// backoff and re-sends every unacknowledged message with its original
// producer name and sequence ID, in order.
//
// De-duplication: every message carries its flowfile ID in the
// edgeagent.flowfile.id property (and, by default, as its key). With broker
// de-duplication enabled, a message whose sequence ID is at or below the last
// one the broker stored for the producer name is acknowledged without being
// stored (Receipt.Duplicate). For that to work across agent restarts the
// producer keeps its Name and the caller supplies Message.SequenceID from a
// durable counter.
//
// Caveat, batching with explicit sequence IDs: pulsar-client-go sends a
// batch under the sequence ID of its first message and does not set the
// batch's highest sequence ID, so the broker de-duplicates whole batches by
// their first ID. Re-sending after a reconnection is safe (the same batches
// are re-sent), but after an agent restart a batch that starts at or below
// the broker's last stored ID is dropped as a whole, newer messages in it
// included. A caller re-sending after a restart sends the messages that may
// have reached the broker in an earlier run (those whose sequence ID was
// assigned then) on a producer with DisableBatching, and only then batches
// again: unbatched, a re-sent message is dropped or stored again, never lost.
//
// Tokens never appear in logs or errors: errors name the token file or
// variable, and the log handler that wraps the library's logging removes the
// token from any record. The library's informational logs go to the
// Logger at debug level, except reconnections.
package pulsar
