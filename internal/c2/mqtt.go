package c2

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"edgeagent.dev/internal/config"

	"edgeagent.dev/transport/mqtt"
)

// The MQTT topics of the c2 channel.

// HeartbeatTopic is where an agent publishes its heartbeats (retained).
func HeartbeatTopic(agentID string) string { return "c2/" + agentID + "/heartbeat" }

// OperationsTopic is where operations for one agent are published.
func OperationsTopic(agentID string) string { return "c2/" + agentID + "/operations" }

// ClassOperationsTopic is where operations for every agent of a class are
// published.
func ClassOperationsTopic(class string) string { return "c2/class/" + class + "/operations" }

// AcksTopic is where an agent publishes its acknowledgements.
func AcksTopic(agentID string) string { return "c2/" + agentID + "/acks" }

// MQTTOptions returns the transport options of the c2 channel for
// agent.c2 (broker, TLS, user name and password file).
func MQTTOptions(cfg *config.C2, clientID string, log *slog.Logger) mqtt.Options {
	return mqtt.Options{
		Broker: cfg.Broker, ClientID: clientID, CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
		Username: cfg.Username, PasswordFile: cfg.PasswordFile, Logger: log,
		MaxReconnectInterval: 30 * time.Second,
	}
}

// mqttChannel publishes heartbeats and acks and consumes operations.
type mqttChannel struct {
	c   *Client
	pub *mqtt.Publisher
	con *mqtt.Consumer
	ops chan Operation
	// done is closed when the consumer loop has exited.
	done   chan struct{}
	cancel context.CancelFunc
}

func newMQTTChannel(ctx context.Context, c *Client) (*mqttChannel, error) {
	pub := mqtt.NewPublisher(MQTTOptions(c.cfg, mqtt.DefaultClientID(c.agentID, "c2-pub"), c.log))
	con := mqtt.NewConsumer(MQTTOptions(c.cfg, mqtt.DefaultClientID(c.agentID, "c2-ops"), c.log), map[string]byte{
		OperationsTopic(c.agentID):             1,
		ClassOperationsTopic(c.cfg.AgentClass): 1,
	}, 16)
	// Connect errors are not fatal: both keep reconnecting in the
	// background. Invalid options are.
	if err := pub.Connect(ctx); err != nil {
		if verr := MQTTOptions(c.cfg, "c2", nil).Validate(); verr != nil {
			return nil, fmt.Errorf("connecting the c2 channel: %w", verr)
		}
		c.log.Warn("c2: the broker is not reachable yet; retrying", "err", err)
	}
	if err := con.Connect(ctx); err != nil {
		c.log.Warn("c2: subscribing to operations; retrying", "err", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	m := &mqttChannel{c: c, pub: pub, con: con, ops: make(chan Operation), done: make(chan struct{}), cancel: cancel}
	go m.loop(lctx)
	return m, nil
}

// loop decodes operations and hands them to Run; a message is
// acknowledged to the broker once Run took it.
func (m *mqttChannel) loop(ctx context.Context) {
	defer close(m.done)
	for {
		var msg *mqtt.Message
		select {
		case <-ctx.Done():
			return
		case msg = <-m.con.Messages():
		}
		var op Operation
		if err := json.Unmarshal(msg.Payload, &op); err != nil || op.Identifier == "" {
			m.c.log.Warn("c2: ignoring an operation that is not a C2Operation with an identifier", "topic", msg.Topic, "err", err)
			msg.Ack()
			continue
		}
		select {
		case <-ctx.Done():
			return // not acked: the broker delivers it again
		case m.ops <- op:
			msg.Ack()
		}
	}
}

func (m *mqttChannel) publish(ctx context.Context, topic string, retained bool, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return m.pub.Publish(pctx, topic, 1, retained, b).Wait(pctx)
}

func (m *mqttChannel) heartbeat(ctx context.Context, hb *Heartbeat) ([]Operation, error) {
	return nil, m.publish(ctx, HeartbeatTopic(m.c.agentID), true, hb)
}

func (m *mqttChannel) ack(ctx context.Context, a *Ack) error {
	return m.publish(ctx, AcksTopic(m.c.agentID), false, a)
}

func (m *mqttChannel) operations() <-chan Operation { return m.ops }

func (m *mqttChannel) close(ctx context.Context) {
	m.cancel()
	<-m.done
	_ = m.con.Close(ctx)
	_ = m.pub.Close(ctx)
}
