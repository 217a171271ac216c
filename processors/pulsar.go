package processors

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"edgeagent.dev"
	"edgeagent.dev/transport/pulsar"
)

// pulsarConnectionProperties are the connection properties PublishPulsar and
// ConsumePulsar share.
func pulsarConnectionProperties() []edgeagent.PropertySpec {
	return []edgeagent.PropertySpec{
		{Name: "service_url", Description: "The broker's service URL: pulsar://host:6650, or pulsar+ssl://host:6651 for TLS.", Required: true, Validate: pulsarServiceURL},
		{Name: "tls_ca_file", Description: "With pulsar+ssl://: PEM bundle of the CAs that sign the broker's certificate (default: the system roots)."},
		{Name: "tls_cert_file", Description: "With pulsar+ssl://: client certificate (PEM) for mutual TLS."},
		{Name: "tls_key_file", Description: "With pulsar+ssl://: client key (PEM) for mutual TLS.", Sensitive: true},
		{Name: "tls_allow_insecure", Description: "With pulsar+ssl://: accept any broker certificate (testing only).", Kind: edgeagent.KindBool, Default: "false"},
		{Name: "tls_validate_hostname", Description: "With pulsar+ssl://: check the broker's certificate against the host name of the service URL.", Kind: edgeagent.KindBool, Default: "true"},
		{Name: "token_file", Description: "A file holding a JWT for token authentication, read on every new connection (a rotated token is picked up). The token is never logged."},
		{Name: "token_env", Description: "An environment variable holding the token (instead of token_file). The token is never logged."},
		{Name: "operation_timeout", Description: "Bounds lookups and producer or consumer creation; also how long one run waits for send receipts before it leaves the flowfiles queued.", Kind: edgeagent.KindDuration, Default: "30s"},
		{Name: "connection_timeout", Description: "Bounds establishing a TCP/TLS connection to the broker.", Kind: edgeagent.KindDuration, Default: "10s"},
	}
}

// pulsarServiceURL checks the scheme of a literal service URL.
func pulsarServiceURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", v, err)
	}
	if u.Scheme != "pulsar" && u.Scheme != "pulsar+ssl" {
		return fmt.Errorf("%q: the scheme must be pulsar:// or pulsar+ssl://", v)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", v)
	}
	return nil
}

// pulsarOptions builds client options from the shared properties. It does
// no I/O; the TLS files and the token are read at start (pulsar.NewClient)
// and when connecting.
func pulsarOptions(cfg *edgeagent.ProcessorConfig) (pulsar.Options, error) {
	o := pulsar.Options{
		ServiceURL: cfg.Property("service_url").String(),
		TLS: pulsar.TLSOptions{
			CAFile:   cfg.Property("tls_ca_file").String(),
			CertFile: cfg.Property("tls_cert_file").String(),
			KeyFile:  cfg.Property("tls_key_file").String(),
		},
		TokenFile: cfg.Property("token_file").String(),
		TokenEnv:  cfg.Property("token_env").String(),
	}
	var err error
	if o.TLS.AllowInsecure, err = boolProp(cfg, "tls_allow_insecure"); err != nil {
		return o, err
	}
	validate, err := boolProp(cfg, "tls_validate_hostname")
	if err != nil {
		return o, err
	}
	// Hostname validation is on by default for pulsar+ssl://; for a plain
	// pulsar:// URL only an explicit setting counts (and is refused).
	if strings.HasPrefix(o.ServiceURL, "pulsar+ssl://") || cfg.Property("tls_validate_hostname").IsSet() {
		o.TLS.ValidateHostname = validate
	}
	if o.OperationTimeout, err = cfg.Property("operation_timeout").Duration(); err != nil {
		return o, fmt.Errorf("property operation_timeout: %w", err)
	}
	if o.ConnectionTimeout, err = cfg.Property("connection_timeout").Duration(); err != nil {
		return o, fmt.Errorf("property connection_timeout: %w", err)
	}
	if o.OperationTimeout <= 0 || o.ConnectionTimeout <= 0 {
		return o, errors.New("properties operation_timeout and connection_timeout must be positive")
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// pulsarTopicName returns the full name (persistent://tenant/namespace/name)
// of a topic given as "name", "tenant/namespace/name" or a full name, the
// way Pulsar expands short names. It fails on names Pulsar would refuse.
func pulsarTopicName(t string) (string, error) {
	if t == "" {
		return "", errors.New("the topic is empty")
	}
	if i := strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return "", fmt.Errorf("topic %q contains a space or control character", t)
	}
	rest := t
	scheme := "persistent"
	if s, r, ok := strings.Cut(t, "://"); ok {
		if s != "persistent" && s != "non-persistent" {
			return "", fmt.Errorf("topic %q: the domain must be persistent:// or non-persistent://", t)
		}
		scheme, rest = s, r
		if strings.Count(rest, "/") < 2 {
			return "", fmt.Errorf("topic %q: a full name is domain://tenant/namespace/topic", t)
		}
	} else {
		switch strings.Count(rest, "/") {
		case 0:
			rest = "public/default/" + rest
		case 2:
		default:
			return "", fmt.Errorf("topic %q: use name, tenant/namespace/name or persistent://tenant/namespace/name", t)
		}
	}
	for _, part := range strings.SplitN(rest, "/", 3) {
		if part == "" {
			return "", fmt.Errorf("topic %q has an empty tenant, namespace or name", t)
		}
	}
	return scheme + "://" + rest, nil
}

// pulsarStartError reports whether an error from creating a producer or
// consumer at start means the configuration is wrong (the flow must not
// start) rather than the broker being unreachable for now.
func pulsarStartError(err error) bool {
	return errors.Is(err, pulsar.ErrAuthentication) || errors.Is(err, pulsar.ErrCredentials) || errors.Is(err, pulsar.ErrInvalidOptions)
}

// defaultProducerName is the producer name PublishPulsar uses when none is
// configured: stable across restarts and reloads (the broker de-duplicates
// by producer name), unique per agent and processor.
func defaultProducerName(agentID, processorName string) string {
	if agentID == "" {
		agentID = "edgeagent"
	}
	var b strings.Builder
	for _, r := range agentID + "." + processorName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}
