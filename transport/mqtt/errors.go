package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Sentinel errors. Test for them with errors.Is; the errors returned by this
// package wrap them with the broker address and the cause.
var (
	// ErrInvalidOptions is returned when Options do not validate.
	ErrInvalidOptions = errors.New("invalid MQTT options")
	// ErrInvalidTopic is returned when a topic, topic filter or QoS cannot
	// be used.
	ErrInvalidTopic = errors.New("invalid MQTT topic")
	// ErrNotConnected is returned (through a Pending) when a message is
	// published while the client has no connection to the broker. Nothing
	// was sent; the caller keeps the message and retries later.
	ErrNotConnected = errors.New("not connected to the MQTT broker")
	// ErrConnectionLost is returned (through a Pending) when the connection
	// dropped before the broker acknowledged the message. The broker may or
	// may not have received it: retrying can produce a duplicate, never a loss.
	ErrConnectionLost = errors.New("connection to the MQTT broker lost before the message was acknowledged")
	// ErrClosed is returned when a Publisher or Consumer is used after Close,
	// or when Close ended a publish before its acknowledgement.
	ErrClosed = errors.New("MQTT client is closed")
	// ErrBadCredentials is returned when the broker answers CONNECT with
	// return code 4, or with code 5 (not authorized) to a client that sent a
	// user name: mosquitto answers a wrong password with 5. In that case the
	// error wraps ErrNotAuthorized too.
	ErrBadCredentials = errors.New("the broker refused the connection: bad user name or password")
	// ErrNotAuthorized is returned when the broker answers CONNECT with
	// return code 5.
	ErrNotAuthorized = errors.New("the broker refused the connection: not authorized")
	// ErrIdentifierRejected is returned when the broker answers CONNECT with
	// return code 2 (the client ID is not allowed).
	ErrIdentifierRejected = errors.New("the broker refused the connection: client identifier rejected")
	// ErrServerUnavailable is returned when the broker answers CONNECT with
	// return code 3.
	ErrServerUnavailable = errors.New("the broker refused the connection: server unavailable")
	// ErrUnacceptableProtocol is returned when the broker answers CONNECT
	// with return code 1 (it does not speak MQTT 3.1.1).
	ErrUnacceptableProtocol = errors.New("the broker refused the connection: unacceptable protocol version")
	// ErrCertificateVerification is returned when the broker's TLS
	// certificate does not verify against the configured CA (or the system
	// roots), or does not match the server name.
	ErrCertificateVerification = errors.New("certificate verification failed for the broker")
	// ErrTLSHandshake is returned when the broker ends the TLS handshake
	// with an alert, typically because it requires a client certificate
	// that was not sent or that it does not trust.
	ErrTLSHandshake = errors.New("the broker rejected the TLS handshake")
	// ErrSubscriptionRefused is returned when the broker answers SUBSCRIBE
	// with the failure code 0x80 for a topic filter.
	ErrSubscriptionRefused = errors.New("the broker refused the subscription")
)

// connackErrors maps paho's CONNACK errors to this package's sentinels.
var connackErrors = []struct {
	paho, ours error
}{
	{packets.ErrorRefusedBadUsernameOrPassword, ErrBadCredentials},
	{packets.ErrorRefusedNotAuthorised, ErrNotAuthorized},
	{packets.ErrorRefusedIDRejected, ErrIdentifierRejected},
	{packets.ErrorRefusedServerUnavailable, ErrServerUnavailable},
	{packets.ErrorRefusedBadProtocolVersion, ErrUnacceptableProtocol},
}

// connectError turns an error from a paho connection attempt into a clear
// error that names the broker (without credentials) and wraps one of the
// sentinels above where one applies. Paho's errors never contain the
// password; this function adds nothing secret either. withCredentials says
// whether CONNECT carried a user name, overTLS whether the URL is ssl:// or
// wss://.
func connectError(broker string, withCredentials, overTLS bool, err error) error {
	if withCredentials && errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		return &multiError{
			msg:  fmt.Sprintf("connecting to %s: %v (CONNACK code 5, not authorized)", broker, ErrBadCredentials),
			errs: []error{ErrBadCredentials, ErrNotAuthorized},
		}
	}
	for _, m := range connackErrors {
		if errors.Is(err, m.paho) {
			return fmt.Errorf("connecting to %s: %w", broker, m.ours)
		}
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	cause := rootCause(err)
	switch {
	case errors.As(err, &verification) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid):
		return fmt.Errorf("connecting to %s: %w: %v", broker, ErrCertificateVerification, cause)
	case strings.Contains(err.Error(), "remote error: tls:"):
		return fmt.Errorf("connecting to %s: %w (a client certificate missing or not trusted?): %v",
			broker, ErrTLSHandshake, cause)
	case overTLS && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
		// With TLS 1.3 the server checks the client certificate after the
		// client's side of the handshake is done: a refusal shows up as
		// the connection closing during CONNECT, often before the alert
		// can be read.
		return fmt.Errorf("connecting to %s: %w: it closed the connection right after the handshake "+
			"(a client certificate missing or not trusted?): %v", broker, ErrTLSHandshake, cause)
	}
	return fmt.Errorf("connecting to %s: %v", broker, cause)
}

// multiError has its own message and wraps several sentinels.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }

// rootCause strips paho's "network Error : " prefix, which says nothing.
func rootCause(err error) error {
	if errors.Is(err, packets.ErrorNetworkError) {
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				if e != packets.ErrorNetworkError {
					return e
				}
			}
		}
	}
	return err
}
