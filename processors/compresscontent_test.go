package processors_test

import (
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

// compressible returns n bytes of text-like data that compresses, but not
// trivially.
func compressible(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"temperature", "humidity", "frame", "sensor", "42.5", "jetson", "edge", "\n", " ", "{}"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(10) == 0 {
			b.WriteByte(byte(rng.IntN(256)))
		}
	}
	return b.Bytes()[:n]
}

// transformOne runs one flowfile through a CompressContent runner and
// returns what came out on rel.
func transformOne(t *testing.T, props map[string]string, content []byte, attrs map[string]string, rel string) enginetest.Output {
	t.Helper()
	r := enginetest.NewRunner(t, processors.CompressContentSpec(), props)
	id := r.Enqueue(content, attrs)
	r.Run(1)
	out := r.Output(rel)
	require.Len(t, out, 1, "on %s", rel)
	require.Equal(t, id, out[0].FlowFile.ID)
	return out[0]
}

func TestCompressContentRoundTrip(t *testing.T) {
	big, small := compressible(5<<20), compressible(256<<10)
	tests := []struct {
		format, level, ext, mime string
		data                     []byte
	}{
		{format: "gzip", ext: ".gz", mime: "application/gzip", data: big},
		{format: "gzip", level: "1", ext: ".gz", mime: "application/gzip", data: small},
		{format: "gzip", level: "9", ext: ".gz", mime: "application/gzip", data: small},
		{format: "zstd", ext: ".zst", mime: "application/zstd", data: big},
		{format: "zstd", level: "1", ext: ".zst", mime: "application/zstd", data: small},
		{format: "zstd", level: "4", ext: ".zst", mime: "application/zstd", data: small},
	}
	for _, tt := range tests {
		t.Run(tt.format+"-"+tt.level, func(t *testing.T) {
			data := tt.data
			props := map[string]string{"compression_format": tt.format}
			if tt.level != "" {
				props["compression_level"] = tt.level
			}
			c := transformOne(t, props, data, map[string]string{"filename": "log.json", edgeagent.AttrMimeType: "application/json"}, "success")
			require.Less(t, len(c.Content), len(data)/2)
			require.Equal(t, "log.json"+tt.ext, c.FlowFile.Attr("filename"))
			require.Equal(t, tt.mime, c.FlowFile.Attr(edgeagent.AttrMimeType))

			format := tt.format
			if tt.level != "" { // the format from mime.type, on the small cases
				format = "use_mime_type"
			}
			d := transformOne(t, map[string]string{"mode": "decompress", "compression_format": format}, c.Content, c.FlowFile.Attributes, "success")
			require.True(t, bytes.Equal(data, d.Content), "decompressed with %s", format)
			require.Equal(t, "log.json", d.FlowFile.Attr("filename"))
			require.Equal(t, "application/json", d.FlowFile.Attr(edgeagent.AttrMimeType), "guessed from the restored extension")
		})
	}
}

func TestCompressContentProvenance(t *testing.T) {
	r := enginetest.NewRunner(t, processors.CompressContentSpec(), nil)
	id := r.Enqueue([]byte("hello hello hello"), nil)
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
	mods := eventsOf(r.Events(), provenance.EventContentModified)
	require.Len(t, mods, 1)
	require.Equal(t, id, mods[0].FlowFileID)
	require.Contains(t, mods[0].Details, "gzip")
}

func TestCompressContentFailures(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write(compressible(100 << 10))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	truncated := gz.Bytes()[:gz.Len()/2]

	tests := []struct {
		name    string
		props   map[string]string
		content []byte
		attrs   map[string]string
	}{
		{name: "gzip garbage", props: map[string]string{"mode": "decompress"}, content: []byte("this is not gzip at all")},
		{name: "gzip truncated", props: map[string]string{"mode": "decompress"}, content: truncated},
		{name: "gzip empty", props: map[string]string{"mode": "decompress"}, content: nil},
		{name: "zstd garbage", props: map[string]string{"mode": "decompress", "compression_format": "zstd"}, content: []byte("this is not zstd at all, not even close")},
		{name: "zstd from gzip", props: map[string]string{"mode": "decompress", "compression_format": "zstd"}, content: gz.Bytes()},
		{name: "no mime type", props: map[string]string{"mode": "decompress", "compression_format": "use_mime_type"}, content: gz.Bytes()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := map[string]string{"filename": "x.gz"}
			out := transformOne(t, tt.props, tt.content, attrs, "failure")
			require.NotEmpty(t, out.FlowFile.Attr(edgeagent.AttrErrorMessage))
			require.Equal(t, tt.content, nilIfEmptyBytes(out.Content), "content unchanged")
			require.Equal(t, "x.gz", out.FlowFile.Attr("filename"))
		})
	}
}

func nilIfEmptyBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestCompressContentUnknownMimeTypePassesThrough(t *testing.T) {
	out := transformOne(t, map[string]string{"mode": "decompress", "compression_format": "use_mime_type"},
		[]byte("plain"), map[string]string{edgeagent.AttrMimeType: "text/plain", "filename": "a.txt"}, "success")
	require.Equal(t, "plain", string(out.Content))
	require.Equal(t, "a.txt", out.FlowFile.Attr("filename"))
	require.Equal(t, "text/plain", out.FlowFile.Attr(edgeagent.AttrMimeType))
}

func TestCompressContentKeepFilename(t *testing.T) {
	out := transformOne(t, map[string]string{"compression_format": "zstd", "update_filename": "false"},
		[]byte("abc"), map[string]string{"filename": "a.txt"}, "success")
	require.Equal(t, "a.txt", out.FlowFile.Attr("filename"))
	out = transformOne(t, map[string]string{"mode": "decompress", "compression_format": "zstd"},
		out.Content, map[string]string{"filename": "a.png", edgeagent.AttrMimeType: "application/zstd"}, "success")
	require.Equal(t, "abc", string(out.Content))
	require.Equal(t, "a.png", out.FlowFile.Attr("filename"), "no .zst extension to remove")
	require.Equal(t, "image/png", out.FlowFile.Attr(edgeagent.AttrMimeType))
}

func TestCompressContentConfigErrors(t *testing.T) {
	spec := processors.CompressContentSpec()
	requireConfigError(t, spec, map[string]string{"compression_format": "use_mime_type"}, "decompress")
	requireConfigError(t, spec, map[string]string{"compression_level": "10"}, "compression_level")
	requireConfigError(t, spec, map[string]string{"compression_level": "0"}, "compression_level")
	requireConfigError(t, spec, map[string]string{"compression_format": "zstd", "compression_level": "5"}, "compression_level")
	requireConfigError(t, spec, map[string]string{"compression_format": "brotli"}, "compression_format")
}
