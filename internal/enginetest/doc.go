// Package enginetest drives one processor by hand against a real bbolt
// repository on disk, like NiFi's TestRunner: enqueue input flowfiles,
// trigger the processor, read what it sent to each relationship and the
// provenance events it recorded.
package enginetest
