package processors

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPulsarTopicName(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "x", want: "persistent://public/default/x"},
		{in: "t1/ns/x", want: "persistent://t1/ns/x"},
		{in: "persistent://t1/ns/x", want: "persistent://t1/ns/x"},
		{in: "non-persistent://t1/ns/x", want: "non-persistent://t1/ns/x"},
		{in: "persistent://t1/ns/a/b", want: "persistent://t1/ns/a/b"},
		{in: "", err: "empty"},
		{in: "a/b", err: "use name, tenant/namespace/name"},
		{in: "a b", err: "space"},
		{in: "http://t/ns/x", err: "domain"},
		{in: "persistent://t/x", err: "full name"},
		{in: "t//x", err: "empty tenant"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := pulsarTopicName(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestDefaultProducerName(t *testing.T) {
	require.Equal(t, "jetson-01.publish", defaultProducerName("jetson-01", "publish"))
	require.Equal(t, "edgeagent.pub-lish-", defaultProducerName("", "pub lish/"))
}

func openTestSeqLog(t *testing.T, path, producer string, now time.Time) (*seqLog, map[string]seqRecord) {
	t.Helper()
	j, live, err := openSeqLog(path, producer, now, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.close() })
	return j, live
}

func TestSeqLogRecoversLiveRecordsAndCounter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", seqLogName)
	epoch0 := time.Unix(0, 0) // a clock that does not raise the counter
	j, live := openTestSeqLog(t, path, "p", epoch0)
	require.Empty(t, live)
	e1 := j.newEpoch()
	first := j.reserve(3)
	require.NoError(t, j.appendSent([]seqLine{
		{fid: "a", rec: seqRecord{seq: first, epoch: e1, topic: "persistent://public/default/t"}},
		{fid: "b", rec: seqRecord{seq: first + 1, epoch: e1, topic: "persistent://public/default/t"}},
		{fid: "c", rec: seqRecord{seq: first + 2, epoch: e1, topic: "persistent://public/default/u t"}},
	}))
	j.done([]string{"a"})
	require.NoError(t, j.close())

	j2, live := openTestSeqLog(t, path, "p", epoch0)
	require.Equal(t, map[string]seqRecord{
		"b": {seq: first + 1, epoch: e1, topic: "persistent://public/default/t"},
		"c": {seq: first + 2, epoch: e1, topic: "persistent://public/default/u t"},
	}, live)
	require.Greater(t, j2.reserve(1), first+2, "new IDs follow every journaled one")
	require.Greater(t, j2.newEpoch(), e1)

	// The clock raises the counter: a lost journal never restarts at 1.
	now := time.Now()
	j3, _ := openTestSeqLog(t, filepath.Join(t.TempDir(), seqLogName), "p", now)
	require.GreaterOrEqual(t, j3.reserve(1), uint64(now.UnixMicro()))
}

func TestSeqLogSkipsTornAndCorruptLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), seqLogName)
	j, _ := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	e := j.newEpoch()
	require.NoError(t, j.appendSent([]seqLine{{fid: "a", rec: seqRecord{seq: 10, epoch: e, topic: "t"}}}))
	require.NoError(t, j.appendSent([]seqLine{{fid: "b", rec: seqRecord{seq: 11, epoch: e, topic: "t"}}}))
	require.NoError(t, j.close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	// Corrupt the line of "a" (one byte) and tear a last line.
	i := strings.Index(string(b), " a\n")
	require.Positive(t, i)
	b[i+1] = 'z'
	b = append(b, []byte("0000abcd S 1 12 0 tor")...)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	j2, live := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	require.Equal(t, map[string]seqRecord{"b": {seq: 11, epoch: e, topic: "t"}}, live)
	require.Equal(t, uint64(12), j2.reserve(1))
}

func TestSeqLogValidity(t *testing.T) {
	path := filepath.Join(t.TempDir(), seqLogName)
	j, _ := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	e1 := j.newEpoch()
	require.NoError(t, j.appendSent([]seqLine{
		{fid: "a", rec: seqRecord{seq: 5, epoch: e1, topic: "t"}},
		{fid: "b", rec: seqRecord{seq: 8, epoch: e1, topic: "t"}},
		{fid: "x", rec: seqRecord{seq: 6, epoch: e1, topic: "other"}},
	}))
	a, b := seqRecord{seq: 5, epoch: e1, topic: "t"}, seqRecord{seq: 8, epoch: e1, topic: "t"}
	require.True(t, j.valid(a))
	require.True(t, j.valid(b))
	// A later epoch re-sends b (8): a (5) may no longer be re-sent under
	// its ID: the broker's last ID is now at least 8.
	e2 := j.newEpoch()
	require.NoError(t, j.appendSent([]seqLine{{fid: "b", rec: seqRecord{seq: 8, epoch: e2, topic: "t"}}}))
	require.False(t, j.valid(a))
	require.True(t, j.valid(seqRecord{seq: 6, epoch: e1, topic: "other"}), "other topics are independent")
	require.NoError(t, j.close())

	// The rewrite at open keeps what decides validity.
	j2, live := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	require.Equal(t, seqRecord{seq: 8, epoch: e2, topic: "t"}, live["b"])
	require.False(t, j2.valid(live["a"]))
	require.True(t, j2.valid(live["b"]))
	require.True(t, j2.valid(live["x"]))

	// A jump (the broker is ahead of the counter) invalidates every older
	// record of the topic and moves the counter far ahead.
	before := j2.reserve(0)
	require.NoError(t, j2.jump("other", 6))
	require.False(t, j2.valid(live["x"]))
	require.Greater(t, j2.reserve(1), before+1<<32)
}

func TestSeqLogProducerRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), seqLogName)
	j, _ := openTestSeqLog(t, path, "old", time.Unix(0, 0))
	require.NoError(t, j.appendSent([]seqLine{{fid: "a", rec: seqRecord{seq: 100, epoch: j.newEpoch(), topic: "t"}}}))
	require.NoError(t, j.close())
	j2, live := openTestSeqLog(t, path, "new", time.Unix(0, 0))
	require.Empty(t, live, "records of another producer name cannot be de-duplicated")
	require.Greater(t, j2.reserve(1), uint64(100), "the counter is kept")
}

func TestSeqLogRewritesWhenLong(t *testing.T) {
	path := filepath.Join(t.TempDir(), seqLogName)
	j, _ := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	e := j.newEpoch()
	lines := make([]seqLine, seqLogRewriteLines/2)
	var fids []string
	for i := range lines {
		lines[i] = seqLine{fid: fmt.Sprintf("f%d", i%100), rec: seqRecord{seq: uint64(i + 1), epoch: e, topic: "t"}}
		if i < 100 {
			fids = append(fids, lines[i].fid)
		}
	}
	require.NoError(t, j.appendSent(lines))
	require.NoError(t, j.appendSent(lines))
	j.done(fids)
	big, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, j.appendSent(lines[:1])) // past the limit: rewritten first
	small, err := os.Stat(path)
	require.NoError(t, err)
	require.Less(t, small.Size(), big.Size()/100, "only what is needed is kept")
	require.NoError(t, j.close())
	_, live := openTestSeqLog(t, path, "p", time.Unix(0, 0))
	require.Equal(t, map[string]seqRecord{"f0": {seq: 1, epoch: e, topic: "t"}}, live)
}
