package buffer

// The buffer package reports the sentinel errors of the root package
// (edgeagent.ErrRepositoryLocked, ErrRepositoryFormat, ErrRepositoryCorrupt,
// ErrRepositoryClosed, ErrContentTooLarge), wrapped with context; test for
// them with errors.Is.
