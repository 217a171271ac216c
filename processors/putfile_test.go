package processors_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

// dirEntries returns the names in dir, failing on error.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names
}

func TestPutFileWrites(t *testing.T) {
	tests := []struct {
		name     string
		filename string // "-": no filename attribute set by the test
		want     string // the file's name in the directory; "" means the uuid
	}{
		{name: "plain", filename: "out.txt", want: "out.txt"},
		{name: "traversal", filename: "../../etc/passwd", want: "passwd"},
		{name: "absolute", filename: "/etc/hosts", want: "hosts"},
		{name: "windows separators", filename: `..\..\evil.bat`, want: "evil.bat"},
		{name: "empty", filename: "", want: ""},
		{name: "dot dot", filename: "..", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": dir})
			id := r.Enqueue([]byte("payload"), map[string]string{edgeagent.AttrFilename: tt.filename})
			r.Run(1)
			out := r.Output("success")
			require.Len(t, out, 1)
			want := tt.want
			if want == "" {
				want = id.String()
			}
			target := filepath.Join(dir, want)
			b, err := os.ReadFile(target)
			require.NoError(t, err)
			require.Equal(t, "payload", string(b))
			require.Equal(t, []string{want}, dirEntries(t, dir), "no temporary file left")

			sends := eventsOf(r.Events(), provenance.EventSend)
			require.Len(t, sends, 1)
			require.Equal(t, "file://"+target, sends[0].TransitURI)
			require.Equal(t, id, sends[0].FlowFileID)
		})
	}
}

func TestPutFileConflictResolution(t *testing.T) {
	tests := []struct {
		strategy string
		rel      string
		content  string // the file's content afterwards
		sent     bool
	}{
		{strategy: "replace", rel: "success", content: "new", sent: true},
		{strategy: "ignore", rel: "success", content: "old"},
		{strategy: "fail", rel: "failure", content: "old"},
	}
	for _, tt := range tests {
		t.Run(tt.strategy, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "f.txt")
			require.NoError(t, os.WriteFile(target, []byte("old"), 0o644))
			r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": dir, "conflict_resolution": tt.strategy})
			r.Enqueue([]byte("new"), map[string]string{edgeagent.AttrFilename: "f.txt"})
			r.Run(1)
			out := r.Output(tt.rel)
			require.Len(t, out, 1)
			if tt.rel == "failure" {
				require.Contains(t, out[0].FlowFile.Attr(edgeagent.AttrErrorMessage), "exists")
				require.Equal(t, "new", string(out[0].Content))
			}
			b, err := os.ReadFile(target)
			require.NoError(t, err)
			require.Equal(t, tt.content, string(b))
			require.Equal(t, []string{"f.txt"}, dirEntries(t, dir), "no temporary file left")
			require.Equal(t, tt.sent, len(eventsOf(r.Events(), provenance.EventSend)) == 1)
		})
	}
}

func TestPutFileDirectories(t *testing.T) {
	base := t.TempDir()
	r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": filepath.Join(base, "${site}", "in")})
	r.Enqueue([]byte("x"), map[string]string{edgeagent.AttrFilename: "a", "site": "north"})
	r.Enqueue([]byte("y"), map[string]string{edgeagent.AttrFilename: "a", "site": "south"})
	r.Run(1)
	require.Len(t, r.Output("success"), 2)
	for site, want := range map[string]string{"north": "x", "south": "y"} {
		b, err := os.ReadFile(filepath.Join(base, site, "in", "a"))
		require.NoError(t, err)
		require.Equal(t, want, string(b))
	}

	r = enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": filepath.Join(base, "missing"), "create_missing_directories": "false"})
	r.Enqueue([]byte("z"), map[string]string{edgeagent.AttrFilename: "a"})
	r.Run(1)
	out := r.Output("failure")
	require.Len(t, out, 1)
	require.NotEmpty(t, out[0].FlowFile.Attr(edgeagent.AttrErrorMessage))
	require.NoDirExists(t, filepath.Join(base, "missing"))

	// A directory where the file should go: the rename fails, the
	// temporary file is cleaned up.
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "taken"), 0o755))
	r = enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": dir, "conflict_resolution": "replace"})
	r.Enqueue([]byte("z"), map[string]string{edgeagent.AttrFilename: "taken"})
	r.Run(1)
	require.Len(t, r.Output("failure"), 1)
	require.Equal(t, []string{"taken"}, dirEntries(t, dir))
}

func TestPutFilePermissionsAndEmptyContent(t *testing.T) {
	dir := t.TempDir()
	r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": dir, "permissions": "0640"})
	r.Enqueue(nil, map[string]string{edgeagent.AttrFilename: "empty"})
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
	info, err := os.Stat(filepath.Join(dir, "empty"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), info.Mode().Perm())
	require.Zero(t, info.Size())
}

func TestPutFileDoesNotYieldWithoutInput(t *testing.T) {
	r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": t.TempDir()})
	r.Run(1)
	require.False(t, r.Yielded())
}

func TestPutFileConfigErrors(t *testing.T) {
	spec := processors.PutFileSpec()
	requireConfigError(t, spec, map[string]string{}, "directory")
	requireConfigError(t, spec, map[string]string{"directory": "/tmp", "permissions": "rw-r--r--"}, "octal")
	requireConfigError(t, spec, map[string]string{"directory": "/tmp", "permissions": "0999"}, "octal")
	requireConfigError(t, spec, map[string]string{"directory": "/tmp", "conflict_resolution": "append"}, "conflict_resolution")
}

func TestPutFileRemovesTempFilesOfAKilledRun(t *testing.T) {
	dir := t.TempDir()
	// A run killed mid-write left this behind; its flowfile is retried.
	stale := filepath.Join(dir, ".report.txt.deadbeef-0011223344556677.tmp")
	require.NoError(t, os.WriteFile(stale, []byte("half"), 0o600))
	other := filepath.Join(dir, ".other.txt.deadbeef-0011223344556677.tmp")
	require.NoError(t, os.WriteFile(other, []byte("half"), 0o600))
	r := enginetest.NewRunner(t, processors.PutFileSpec(), map[string]string{"directory": dir})
	r.Enqueue([]byte("complete"), map[string]string{"filename": "report.txt"})
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"report.txt", filepath.Base(other)}, names, "only the stale temp of the written file is removed")
}
