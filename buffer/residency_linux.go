//go:build linux

package buffer

import (
	bolt "go.etcd.io/bbolt"
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
	var size int64
	_ = r.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	if size <= 0 {
		return
	}
	// The raw system call: the address is bbolt's mapping, not Go memory.
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.db.Info().Data, uintptr(size), unix.MADV_DONTNEED); errno != 0 {
		r.log.Debug("releasing mapped pages", "err", errno)
	}
}
