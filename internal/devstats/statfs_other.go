//go:build !linux

package devstats

import (
	"errors"
	"fmt"
)

// sysStatfs is only implemented on Linux.
func sysStatfs(path string) (FSStats, error) {
	return FSStats{}, fmt.Errorf("statfs %s: %w", path, errors.ErrUnsupported)
}
