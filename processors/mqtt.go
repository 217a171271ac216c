package processors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/transport/mqtt"
)

// mqttConnectionProperties are the connection properties PublishMQTT and
// ConsumeMQTT share.
func mqttConnectionProperties() []edgeagent.PropertySpec {
	return []edgeagent.PropertySpec{
		{Name: "broker", Description: "The broker URL: tcp://host:1883, ssl://host:8883, ws://host:port/path or wss://host:port/path.", Required: true},
		{Name: "client_id", Description: "The MQTT client ID. Default: derived from agent.id and the processor name, stable across restarts (a consumer's persistent session is keyed on it)."},
		{Name: "username", Description: "The user name sent in CONNECT."},
		{Name: "password_file", Description: "A file holding the password (never put the password itself in the flow)."},
		{Name: "password_env", Description: "An environment variable holding the password."},
		{Name: "tls_ca_file", Description: "PEM bundle of the CAs that sign the broker's certificate (default: the system roots)."},
		{Name: "tls_cert_file", Description: "Client certificate (PEM) for mutual TLS."},
		{Name: "tls_key_file", Description: "Client key (PEM) for mutual TLS.", Sensitive: true},
		{Name: "tls_server_name", Description: "The name checked in the broker's certificate (default: the broker's host)."},
		{Name: "tls_insecure_skip_verify", Description: "Skip verification of the broker's certificate (testing only).", Kind: edgeagent.KindBool, Default: "false"},
		{Name: "keepalive", Description: "MQTT keepalive interval.", Kind: edgeagent.KindDuration, Default: "30s"},
		{Name: "connect_timeout", Description: "Bounds dialing, the TLS handshake and CONNECT/CONNACK.", Kind: edgeagent.KindDuration, Default: "10s"},
		{Name: "max_reconnect_interval", Description: "Cap of the exponential backoff between reconnection attempts.", Kind: edgeagent.KindDuration, Default: "30s"},
	}
}

// mqttOptions builds transport options from the shared properties. It does
// no I/O; the password and TLS files are read when connecting.
func mqttOptions(cfg *edgeagent.ProcessorConfig) (mqtt.Options, error) {
	o := mqtt.Options{
		Broker:       cfg.Property("broker").String(),
		ClientID:     cfg.Property("client_id").String(),
		Username:     cfg.Property("username").String(),
		PasswordFile: cfg.Property("password_file").String(),
		PasswordEnv:  cfg.Property("password_env").String(),
		CAFile:       cfg.Property("tls_ca_file").String(),
		CertFile:     cfg.Property("tls_cert_file").String(),
		KeyFile:      cfg.Property("tls_key_file").String(),
		ServerName:   cfg.Property("tls_server_name").String(),
		Logger:       cfg.Logger,
	}
	if o.ClientID == "" {
		o.ClientID = mqtt.DefaultClientID(cfg.AgentID, cfg.Name)
	}
	var err error
	if o.InsecureSkipVerify, err = boolProp(cfg, "tls_insecure_skip_verify"); err != nil {
		return o, err
	}
	if o.KeepAlive, err = cfg.Property("keepalive").Duration(); err != nil {
		return o, fmt.Errorf("property keepalive: %w", err)
	}
	if o.ConnectTimeout, err = cfg.Property("connect_timeout").Duration(); err != nil {
		return o, fmt.Errorf("property connect_timeout: %w", err)
	}
	if o.MaxReconnectInterval, err = cfg.Property("max_reconnect_interval").Duration(); err != nil {
		return o, fmt.Errorf("property max_reconnect_interval: %w", err)
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// qosProp parses the qos property PublishMQTT and ConsumeMQTT share.
func qosProp(cfg *edgeagent.ProcessorConfig) (byte, error) {
	v := cfg.Property("qos").String()
	q, err := strconv.Atoi(v)
	if err != nil || q < 0 || q > 2 {
		return 0, fmt.Errorf("property qos: %q is not 0, 1 or 2", v)
	}
	return byte(q), nil
}

// connectMQTT makes the first connection. Bad options, and password or TLS
// files that are missing or cannot be used, stop the flow from starting; an
// unreachable broker does not (the network may be down at boot): the client
// keeps retrying in the background and flowfiles or messages wait.
func connectMQTT(ctx context.Context, pc edgeagent.ProcessContext, o mqtt.Options, connect func(context.Context) error) error {
	if err := connect(ctx); err != nil {
		if errors.Is(err, mqtt.ErrInvalidOptions) || errors.Is(err, mqtt.ErrInvalidTopic) {
			return err
		}
		pc.Logger().Warn("MQTT broker not reachable yet; retrying in the background", "broker", o.Broker, "err", err)
	}
	return nil
}

// closeMQTT closes an MQTT client, waiting at most 5 s.
func closeMQTT(ctx context.Context, close func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return close(ctx)
}

// transitURI is the provenance URI of a topic on a broker.
func transitURI(broker, topic string) string {
	return strings.TrimSuffix(broker, "/") + "/" + topic
}
