// Package mqtt is the MQTT 3.1.1 transport of the agent, on top of
// github.com/eclipse/paho.mqtt.golang: connection management (tcp://, ssl://,
// ws://, wss://, TLS and mutual TLS, user name and password from a file or
// the environment, reconnect with capped exponential backoff, connection
// state and counters), a Publisher with pipelined acknowledgements and a
// Consumer with manual acknowledgements. The PublishMQTT and ConsumeMQTT
// processors are built on it; this package knows nothing of flowfiles.
//
// Delivery contract, in short:
//
//   - Publisher: a message is reported delivered only after the broker's
//     PUBACK (QoS 1) or PUBCOMP (QoS 2). A connection that drops fails every
//     un-acknowledged publish with ErrConnectionLost; while disconnected,
//     Publish fails at once with ErrNotConnected. Nothing is queued in memory
//     beyond the messages in flight, and paho never resends a message on its
//     own after the caller was told it failed. The caller keeps failed
//     messages durable and publishes them again: duplicates are possible,
//     losses are not. QoS 0 is fire-and-forget: reported done once written
//     to the socket.
//   - Consumer: nothing is acknowledged until Message.Ack, so the broker
//     redelivers whatever was not acknowledged when the consumer crashes,
//     disconnects or is closed. A bounded buffer and a blocking handler give
//     backpressure. Duplicates are possible (Message.Duplicate may tell),
//     losses are not for QoS 1 and 2.
//
// Secrets: the password is read from Options.PasswordFile or
// Options.PasswordEnv at Connect and only handed to paho. It never appears in
// logs, errors, Options.String or Options.LogValue; errors about key files
// name the file, never its contents.
//
// Errors are clear about the cause: a wrong CA gives
// ErrCertificateVerification ("certificate verification failed for the
// broker"), a wrong password ErrBadCredentials ("the broker refused the
// connection: bad user name or password"); each CONNACK return code has its
// sentinel.
//
// The mqtttest sub-package starts real mosquitto brokers for tests.
package mqtt
