package processors

import (
	"edgeagent.dev"
	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/pulsar"
)

func boolMetric(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// mqttMetrics turns an MQTT client's counters into processor metrics.
func mqttMetrics(st mqtt.Stats) []edgeagent.Metric {
	return []edgeagent.Metric{
		{Name: "broker_connected", Help: "1 while the processor's MQTT client is connected to its broker, else 0.", Value: boolMetric(st.Connected)},
		{Name: "broker_reconnects_total", Help: "MQTT connections established after the first one.", Value: float64(st.Reconnects), Counter: true},
		{Name: "broker_connections_lost_total", Help: "MQTT connections that dropped.", Value: float64(st.ConnectionLost), Counter: true},
		{Name: "mqtt_published_total", Help: "MQTT messages handed to the connection.", Value: float64(st.Published), Counter: true},
		{Name: "mqtt_acknowledged_total", Help: "MQTT messages acknowledged (published: by the broker; received: to the broker).", Value: float64(st.Acked), Counter: true},
		{Name: "mqtt_received_total", Help: "MQTT messages received.", Value: float64(st.Received), Counter: true},
	}
}

// ProcessorMetrics implements edgeagent.MetricsReporter.
func (p *publishMQTT) ProcessorMetrics() []edgeagent.Metric {
	if p.pub == nil {
		return nil
	}
	return mqttMetrics(p.pub.Stats())
}

// ProcessorMetrics implements edgeagent.MetricsReporter.
func (p *consumeMQTT) ProcessorMetrics() []edgeagent.Metric {
	if p.c == nil {
		return nil
	}
	return mqttMetrics(p.c.Stats())
}

// pulsarMetrics turns a Pulsar client's counters into processor metrics.
func pulsarMetrics(c *pulsar.Client) []edgeagent.Metric {
	if c == nil {
		return nil
	}
	st := c.Stats()
	return []edgeagent.Metric{
		{Name: "broker_connected", Help: "1 while the processor's client is connected to its broker, else 0.", Value: boolMetric(st.Connected)},
		{Name: "broker_reconnects_total", Help: "Producers and consumers that re-attached to a Pulsar broker after losing their connection.", Value: float64(st.Reconnects), Counter: true},
		{Name: "pulsar_sent_total", Help: "Pulsar messages the broker acknowledged with a send receipt.", Value: float64(st.Sent), Counter: true},
		{Name: "pulsar_duplicates_total", Help: "Send receipts the broker marked as duplicates (dropped by its de-duplication).", Value: float64(st.Duplicates), Counter: true},
		{Name: "pulsar_send_errors_total", Help: "Pulsar sends that failed.", Value: float64(st.SendErrors), Counter: true},
		{Name: "pulsar_received_total", Help: "Pulsar messages received.", Value: float64(st.Received), Counter: true},
	}
}

// ProcessorMetrics implements edgeagent.MetricsReporter.
func (p *publishPulsar) ProcessorMetrics() []edgeagent.Metric { return pulsarMetrics(p.client) }

// ProcessorMetrics implements edgeagent.MetricsReporter.
func (p *consumePulsar) ProcessorMetrics() []edgeagent.Metric { return pulsarMetrics(p.client) }
