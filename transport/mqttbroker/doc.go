// Package mqttbroker is the agent's embedded MQTT broker
// (agent.mqtt_broker), built on github.com/mochi-mqtt/server/v2: one TCP
// listener, loopback-only by default, with optional TLS, mutual TLS and a
// mosquitto_passwd-format password file.
//
// It is configured so that QoS 1 and 2 messages are never dropped silently
// under load. mochi's default drops a message when a subscriber's outbound
// queue (MaximumClientWritesPending) is full; here publishers are pushed back
// instead, by withholding their PUBACK while a subscriber has too many
// messages in flight (see the flow-control hook in hooks.go). The drops that
// remain possible (an offline persistent session that reaches 65535 queued
// messages) are logged as errors and counted in Stats.
package mqttbroker
