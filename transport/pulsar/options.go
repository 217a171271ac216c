package pulsar

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults applied by NewClient when an Options field is zero.
const (
	DefaultOperationTimeout  = 30 * time.Second
	DefaultConnectionTimeout = 10 * time.Second
)

// Options configures a Client: where the broker is, how to secure the
// connection and how long to wait.
type Options struct {
	// ServiceURL is pulsar://host:port or pulsar+ssl://host:port.
	ServiceURL string
	TLS        TLSOptions
	// TokenFile is a file holding a JWT for token authentication. It is
	// read on every new connection, so a rotated token is picked up.
	TokenFile string
	// TokenEnv names an environment variable holding the token (read on
	// every new connection). At most one of TokenFile and TokenEnv is set.
	// The token never appears in logs or errors.
	TokenEnv string
	// OperationTimeout bounds lookups, producer and consumer creation and
	// close (default 30s).
	OperationTimeout time.Duration
	// ConnectionTimeout bounds establishing a TCP/TLS connection (default 10s).
	ConnectionTimeout time.Duration
	// Logger receives the client's logs; nil discards them. The Pulsar
	// library's informational chatter is logged at debug level.
	Logger *slog.Logger
	// LibraryDebugLogs passes pulsar-client-go's own debug records (several
	// per message, with payloads) to Logger. Off, they are not even
	// formatted: at debug level they cut throughput about 25 times.
	LibraryDebugLogs bool
}

// TLSOptions configures pulsar+ssl:// connections. All paths are PEM files.
type TLSOptions struct {
	// CAFile holds the CA certificates that sign the broker's certificate;
	// empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key for mutual
	// TLS; set both or neither.
	CertFile string
	KeyFile  string
	// AllowInsecure accepts any broker certificate. For tests only.
	AllowInsecure bool
	// ValidateHostname checks the broker's certificate against the host
	// name of the address the client connects to.
	ValidateHostname bool
}

// Check reads the CA file and the client key pair, so that a file that
// cannot be used is reported at start (wrapping ErrInvalidOptions, naming
// the file, never its content) instead of failing every connection
// attempt. Unset files are skipped.
func (t TLSOptions) Check() error {
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("%w: reading TLS CA file: %w", ErrInvalidOptions, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: reading TLS CA file %s: no PEM certificate found", ErrInvalidOptions, t.CAFile)
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return fmt.Errorf("%w: loading TLS client certificate %s and key %s: %w", ErrInvalidOptions, t.CertFile, t.KeyFile, err)
		}
	}
	return nil
}

func (t TLSOptions) isSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.AllowInsecure || t.ValidateHostname
}

// Validate checks the options without touching the network or the file
// system. Every problem is reported, each wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	tlsURL := false
	if o.ServiceURL == "" {
		bad("service URL is empty")
	} else if u, err := url.Parse(o.ServiceURL); err != nil {
		bad("parsing service URL: %v", err)
	} else {
		switch u.Scheme {
		case "pulsar":
		case "pulsar+ssl":
			tlsURL = true
		default:
			bad("service URL %q: scheme must be pulsar:// or pulsar+ssl://", o.ServiceURL)
		}
		if u.Host == "" {
			bad("service URL %q has no host", o.ServiceURL)
		}
	}
	if o.TLS.isSet() && !tlsURL && o.ServiceURL != "" {
		bad("TLS options need a pulsar+ssl:// service URL")
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		bad("TLS certificate and key files must be set together")
	}
	if o.TokenFile != "" && o.TokenEnv != "" {
		bad("set at most one of token file and token environment variable")
	}
	if o.OperationTimeout < 0 {
		bad("operation timeout %s is negative", o.OperationTimeout)
	}
	if o.ConnectionTimeout < 0 {
		bad("connection timeout %s is negative", o.ConnectionTimeout)
	}
	return errors.Join(errs...)
}

// tokenSupplier returns the function pulsar-client-go calls for the token
// on every new connection, or nil without token authentication. Its errors
// name the file or variable, never the content.
func (o Options) tokenSupplier(remember func(string)) func() (string, error) {
	switch {
	case o.TokenFile != "":
		path := o.TokenFile
		return func() (string, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("%w: token file: %w", ErrCredentials, err)
			}
			tok := strings.TrimSpace(string(data))
			if tok == "" {
				return "", fmt.Errorf("%w: token file %s is empty", ErrCredentials, path)
			}
			remember(tok)
			return tok, nil
		}
	case o.TokenEnv != "":
		name := o.TokenEnv
		return func() (string, error) {
			tok := strings.TrimSpace(os.Getenv(name))
			if tok == "" {
				return "", fmt.Errorf("%w: environment variable %s is empty or unset", ErrCredentials, name)
			}
			remember(tok)
			return tok, nil
		}
	}
	return nil
}
