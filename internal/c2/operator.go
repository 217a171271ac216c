package c2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"edgeagent.dev/transport/mqtt"
)

// The operator side: what `edgeagent c2` does over the central broker.

// AgentSeen is an agent as its latest heartbeat shows it.
type AgentSeen struct {
	ID        string
	Class     string
	FlowID    string
	Seen      time.Time // the heartbeat's creation time
	Queued    int64     // flowfiles in all queues
	Full      []string  // queues at their backpressure threshold
	Heartbeat *Heartbeat
}

// operatorOptions makes opts fit an operator's short-lived connection.
func operatorOptions(opts mqtt.Options, role string) mqtt.Options {
	if opts.ClientID == "" {
		opts.ClientID = "edgeagent-" + role + "-" + newID()[:8]
	} else {
		opts.ClientID += "-" + role
	}
	opts.CleanSession = true
	return opts
}

// Agents collects the heartbeats the broker holds (retained) or that arrive
// within wait, and returns the latest of each agent, sorted by ID.
func Agents(ctx context.Context, opts mqtt.Options, wait time.Duration) ([]AgentSeen, error) {
	con := mqtt.NewConsumer(operatorOptions(opts, "agents"), map[string]byte{"c2/+/heartbeat": 1}, 256)
	if err := con.Connect(ctx); err != nil {
		_ = con.Close(ctx)
		return nil, fmt.Errorf("connecting to %s: %w", opts.Broker, err)
	}
	defer con.Close(context.WithoutCancel(ctx))
	seen := map[string]AgentSeen{}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			out := make([]AgentSeen, 0, len(seen))
			for _, a := range seen {
				out = append(out, a)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
			return out, nil
		case m := <-con.Messages():
			m.Ack()
			var hb Heartbeat
			if json.Unmarshal(m.Payload, &hb) != nil || hb.AgentInfo == nil {
				continue
			}
			a := AgentSeen{ID: hb.AgentInfo.Identifier, Class: hb.AgentInfo.AgentClass, Seen: time.UnixMilli(hb.Created), Heartbeat: &hb}
			if a.ID == "" {
				a.ID = strings.TrimSuffix(strings.TrimPrefix(m.Topic, "c2/"), "/heartbeat")
			}
			if hb.FlowInfo != nil {
				a.FlowID = hb.FlowInfo.FlowID
			}
			if hb.Edge != nil {
				for _, q := range hb.Edge.Queues {
					a.Queued += q.Count
					if q.Full {
						a.Full = append(a.Full, q.Name)
					}
				}
			}
			if prev, ok := seen[a.ID]; !ok || !a.Seen.Before(prev.Seen) {
				seen[a.ID] = a
			}
		}
	}
}

// Push publishes op to one agent (agentID) or to every agent of a class.
// The agents' sessions are persistent, so an agent that is offline gets it
// when it reconnects.
func Push(ctx context.Context, opts mqtt.Options, agentID, class string, op Operation) error {
	var topic string
	switch {
	case (agentID == "") == (class == ""):
		return errors.New("pushing an operation: name an agent or a class, not both")
	case agentID != "":
		topic = OperationsTopic(agentID)
	default:
		topic = ClassOperationsTopic(class)
	}
	if op.Identifier == "" {
		op.Identifier = newID()
	}
	b, err := json.Marshal(op)
	if err != nil {
		return err
	}
	pub := mqtt.NewPublisher(operatorOptions(opts, "push"))
	if err := pub.Connect(ctx); err != nil {
		_ = pub.Close(ctx)
		return fmt.Errorf("connecting to %s: %w", opts.Broker, err)
	}
	defer pub.Close(context.WithoutCancel(ctx))
	if err := pub.Publish(ctx, topic, 1, false, b).Wait(ctx); err != nil {
		return fmt.Errorf("publishing to %s: %w", topic, err)
	}
	return nil
}

// Acks delivers the acknowledgements of one agent (or of every agent when
// agentID is "") to fn until ctx is done or fn returns false.
func Acks(ctx context.Context, opts mqtt.Options, agentID string, fn func(agentID string, a Ack) bool) error {
	id := agentID
	if id == "" {
		id = "+"
	}
	con := mqtt.NewConsumer(operatorOptions(opts, "acks"), map[string]byte{AcksTopic(id): 1}, 256)
	if err := con.Connect(ctx); err != nil {
		_ = con.Close(ctx)
		return fmt.Errorf("connecting to %s: %w", opts.Broker, err)
	}
	defer con.Close(context.WithoutCancel(ctx))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-con.Messages():
			m.Ack()
			var a Ack
			if json.Unmarshal(m.Payload, &a) != nil {
				continue
			}
			from := strings.TrimSuffix(strings.TrimPrefix(m.Topic, "c2/"), "/acks")
			if !fn(from, a) {
				return nil
			}
		}
	}
}
