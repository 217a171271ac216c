package pulsartest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawConn speaks the protocol by hand, for what the Go client never does.
type rawConn struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, b *Broker) *rawConn {
	nc, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func (r *rawConn) write(frame []byte) {
	_, err := r.nc.Write(frame)
	require.NoError(r.t, err)
}

func (r *rawConn) read() *frame {
	require.NoError(r.t, r.nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	f, err := readFrame(r.nc)
	require.NoError(r.t, err)
	return f
}

func connectCmd(version int64, method string, data []byte) enc {
	body := enc(nil).str(1, "raw-test").int(4, version)
	if method != "" {
		body = body.str(5, method).bytes(3, data)
	}
	return command(cmdConnect, body)
}

// payloadWithMeta builds magic|crc|size|metadata|payload.
func payloadWithMeta(meta enc, payload []byte) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(meta)))
	buf.Write(meta)
	buf.Write(payload)
	rest := buf.Bytes()
	out := binary.BigEndian.AppendUint16(nil, magicCRC32C)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(rest, crcTable))
	return append(out, rest...)
}

func TestHandshakeAndPing(t *testing.T) {
	b := Start(t, WithPingInterval(20*time.Millisecond))
	r := dialRaw(t, b)
	r.write(simpleFrame(connectCmd(99, "", nil)))
	f := r.read()
	require.Equal(t, cmdConnected, f.typ)
	require.EqualValues(t, maxProtocolVersion, f.body.int(2, 0), "version negotiated down")
	require.EqualValues(t, defaultMaxMessageSize, f.body.int(3, 0))

	r.write(simpleFrame(command(cmdPing, nil)))
	sawPong, sawPing := false, false
	for !sawPong || !sawPing {
		switch f := r.read(); f.typ {
		case cmdPong:
			sawPong = true
		case cmdPing:
			sawPing = true
			r.write(simpleFrame(command(cmdPong, nil)))
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	b := Start(t, WithToken("secret"))
	for _, tc := range []struct {
		name    string
		connect enc
		code    uint64
	}{
		{"old protocol", connectCmd(3, "", nil), errUnsupportedVersion},
		{"no token", connectCmd(20, "", nil), errAuthentication},
		{"wrong token", connectCmd(20, "token", []byte("guess")), errAuthentication},
		{"wrong method", connectCmd(20, "basic", []byte("secret")), errAuthentication},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, b)
			r.write(simpleFrame(tc.connect))
			f := r.read()
			require.Equal(t, cmdError, f.typ)
			require.Equal(t, tc.code, f.body.uint(2, 0))
			require.NotContains(t, f.body.str(3), "secret")
			require.NotContains(t, f.body.str(3), "guess")
			_, err := readFrame(r.nc)
			require.Error(t, err, "the broker closes the connection")
		})
	}
	r := dialRaw(t, b)
	r.write(simpleFrame(connectCmd(20, "token", []byte("secret"))))
	require.Equal(t, cmdConnected, r.read().typ)
}

// A SEND whose checksum does not match is refused and not stored.
func TestChecksumMismatch(t *testing.T) {
	b := Start(t)
	r := dialRaw(t, b)
	r.write(simpleFrame(connectCmd(20, "", nil)))
	require.Equal(t, cmdConnected, r.read().typ)
	r.write(simpleFrame(command(cmdProducer, enc(nil).str(1, "crc").uint(2, 1).uint(3, 1))))
	f := r.read()
	require.Equal(t, cmdProducerSuccess, f.typ)
	require.Equal(t, int64(-1), f.body.int(3, 0))

	meta := enc(nil).str(1, f.body.str(2)).uint(2, 0).uint(3, uint64(time.Now().UnixMilli()))
	hp := payloadWithMeta(meta, []byte("hello"))
	hp[len(hp)-1] ^= 0xff // corrupt the payload
	r.write(payloadFrame(command(cmdSend, enc(nil).uint(1, 1).uint(2, 0)), hp))
	f = r.read()
	require.Equal(t, cmdSendError, f.typ)
	require.EqualValues(t, errChecksumCode, f.body.uint(3, 0))
	require.Empty(t, b.Messages("crc"))
	require.Equal(t, 1, b.SendErrors())
}

func FuzzDecodeEntry(f *testing.F) {
	meta := enc(nil).str(1, "p").uint(2, 7).uint(3, 1).uint(11, 2)
	batch := binary.BigEndian.AppendUint32(nil, 2)
	batch = append(batch, enc(nil).uint(3, 1)...)
	batch = append(batch, 'a')
	batch = binary.BigEndian.AppendUint32(batch, 2)
	batch = append(batch, enc(nil).uint(3, 1)...)
	batch = append(batch, 'b')
	f.Add(payloadWithMeta(meta, batch))
	f.Add(payloadWithMeta(enc(nil).str(1, "p").uint(8, compressionLZ4).uint(9, 10), []byte{0xf0}))
	f.Add([]byte{0x0e, 0x01, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Must not panic or allocate without bound, whatever the bytes.
		if len(data) > 10 {
			// Fix the checksum so the fuzzer reaches the decoders.
			binary.BigEndian.PutUint16(data, magicCRC32C)
			binary.BigEndian.PutUint32(data[2:], crc32.Checksum(data[6:], crcTable))
		}
		_, _ = decodeEntry("t", &entry{data: data})
		if rawMeta, _, err := splitPayload(data); err == nil {
			_, _ = parseEntryMeta(rawMeta)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(simpleFrame(connectCmd(20, "token", []byte("x"))))
	f.Add(payloadFrame(command(cmdSend, enc(nil).uint(1, 1).uint(2, 3)), payloadWithMeta(enc(nil).str(1, "p"), []byte("x"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := readFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		_ = fr.body.msgs(3)
		_ = fr.body.uints(5)
		_ = fr.body.keyValues(4)
	})
}
