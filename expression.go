package edgeagent

// This file is being written: the full expression language replaces this.

// ExprEnv supplies the agent-level values expressions can use besides
// flowfile attributes.
type ExprEnv struct {
	AgentID  string
	Hostname string
}

// Expression is a compiled property value with ${...} expressions.
type Expression struct{ src string }

// CompileExpression parses s.
func CompileExpression(s string) (*Expression, error) { return &Expression{src: s}, nil }

// Evaluate renders the expression for ff (which may be nil).
func (e *Expression) Evaluate(env ExprEnv, ff *FlowFile) (string, error) { return e.src, nil }
