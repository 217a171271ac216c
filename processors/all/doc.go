// Package all registers every processor built into the agent. The CLI and
// the flow validator use Registry; adding a processor is one line here.
package all
