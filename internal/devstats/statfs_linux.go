//go:build linux

package devstats

import (
	"fmt"
	"os"
	"syscall"
)

// sysStatfs calls statfs(2).
func sysStatfs(path string) (FSStats, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return FSStats{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	size := uint64(st.Frsize)
	if size == 0 {
		size = uint64(st.Bsize)
	}
	if size == 0 {
		return FSStats{}, fmt.Errorf("statfs %s: zero block size", path)
	}
	return FSStats{BlockSize: size, Blocks: st.Blocks, BlocksFree: st.Bfree, BlocksAvailable: st.Bavail}, nil
}
