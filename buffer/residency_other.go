//go:build !linux

package buffer

// releaseMappedPages is a no-op where the mapping cannot be found.
func (r *Repo) releaseMappedPages() {}
