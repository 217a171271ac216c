// Package configs holds the example flows. CI validates every one of them;
// demo.yaml is embedded in the binary and run by `edgeagent demo`.
package configs

import _ "embed"

//go:embed demo.yaml
var demo []byte

// Demo returns the demo flow. Its paths start with DEMO_DIR, which the
// demo command replaces with its working directory.
func Demo() []byte { return append([]byte(nil), demo...) }
