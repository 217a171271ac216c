//go:build linux

package buffer

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseMappedPages drops this process's page-table entries for the data
// file's memory mapping (madvise MADV_DONTNEED). bbolt reads the file through
// a shared read-only mapping, and every page it ever read stays resident in
// the process (and counted in its RSS) until it is unmapped, so RSS would
// grow with the size of the backlog. The pages stay in the page cache; the
// next read faults them back in from there.
//
// It must run on the committer goroutine between transactions: only a write
// transaction remaps the file, so the mapping cannot move meanwhile.
func (r *Repo) releaseMappedPages() {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasSuffix(line, " "+r.path) {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 6 || !strings.HasPrefix(fields[1], "r") || fields[1][3] != 's' {
			continue // only bbolt's shared read mapping of the file
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// The raw system call: the address is not Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED); errno != 0 {
			r.log.Debug("releasing mapped pages", "err", errno)
		}
	}
}
