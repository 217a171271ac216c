package engine_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/processors/all"
)

const watchedFlow = `
agent: {id: watch, data_dir: DATA/data, watch_config: WATCH}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    properties: {batch_size: 1, file_size: 8B}
  - {name: tag, type: UpdateAttribute, properties: {x: "1"}, auto_terminate: [success]}
connections:
  - {name: q, from: gen, relationship: success, to: tag, max_count: MAX}
`

func watched(watch bool, max string) string {
	return strings.NewReplacer("WATCH", map[bool]string{true: "true", false: "false"}[watch], "MAX", max).Replace(watchedFlow)
}

// TestWatchConfigReloadsOnChange: with agent.watch_config the agent
// reloads when the flow file changes, through the same validation as
// SIGHUP; a broken edit is refused once, not at every poll; without
// watch_config changes are ignored.
func TestWatchConfigReloadsOnChange(t *testing.T) {
	const interval = 40 * time.Millisecond
	r := runAgent(t, all.Registry(), watched(true, "10"), interval)
	maxCount := func() int64 { q, _ := r.queue("q"); return q.MaxCount }

	r.write(watched(true, "20"))
	require.Eventually(t, func() bool { return r.status().Reloads == 1 && maxCount() == 20 }, 5*time.Second, 10*time.Millisecond)

	// A broken edit: refused once, the running flow kept.
	r.write(watched(true, "20") + "bogus_key: 1\n")
	require.Eventually(t, func() bool { return r.status().ReloadFailures == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Contains(t, r.status().LastReloadErr, "bogus_key")
	require.Never(t, func() bool { return r.status().ReloadFailures > 1 }, 10*interval, interval/2)
	require.Equal(t, int64(20), maxCount())

	// Fixed: reloaded.
	r.write(watched(true, "30"))
	require.Eventually(t, func() bool { return r.status().Reloads == 2 && maxCount() == 30 }, 5*time.Second, 10*time.Millisecond)

	// watch_config turned off (this edit is still seen): later edits are not.
	r.write(watched(false, "40"))
	require.Eventually(t, func() bool { return r.status().Reloads == 3 && maxCount() == 40 }, 5*time.Second, 10*time.Millisecond)
	r.write(watched(false, "50"))
	require.Never(t, func() bool { return r.status().Reloads > 3 }, 10*interval, interval/2)
	require.Equal(t, int64(40), maxCount())
	require.Contains(t, r.logs.String(), "watch_config: the flow file changed; reloading")
}
