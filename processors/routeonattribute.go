package processors

import (
	"context"
	"fmt"
	"strings"

	"edgeagent.dev"
)

// RouteOnAttribute's fixed relationships.
var (
	relUnmatched = edgeagent.Relationship{Name: "unmatched", Description: "Flowfiles that match no route."}
)

// AttrRoute is the attribute RouteOnAttribute sets to the route a flowfile
// took.
const AttrRoute = "RouteOnAttribute.Route"

// RouteOnAttributeSpec returns the spec of RouteOnAttribute, which routes
// flowfiles by boolean expressions over their attributes.
func RouteOnAttributeSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "RouteOnAttribute",
		Summary: "Routes flowfiles to the relationships whose boolean expressions they match.",
		Description: "Each dynamic property is a route: its name is a relationship, its value a boolean expression " +
			"such as ${filename:endsWith('.txt')}. A flowfile goes to every route whose expression evaluates to " +
			"true (the first match gets the flowfile, the others a clone), or to unmatched when none does, with " +
			"the RouteOnAttribute.Route attribute set to the route and a ROUTE provenance event. A flowfile whose " +
			"expressions fail to evaluate goes to failure.",
		Input: edgeagent.InputRequired,
		Relationships: []edgeagent.Relationship{
			relUnmatched,
			edgeagent.RelFailure,
		},
		Dynamic: &edgeagent.DynamicSpec{
			Description:   "The name is a relationship; flowfiles for which the value (a boolean expression) is true go to it.",
			Expressions:   true,
			Relationships: true,
		},
		New: newRouteOnAttribute,
	}
}

type route struct {
	rel  edgeagent.Relationship
	cond edgeagent.PropertyValue
}

type routeOnAttribute struct {
	routes []route
}

func newRouteOnAttribute(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &routeOnAttribute{}
	for _, d := range cfg.Dynamic {
		if d.Name == relUnmatched.Name || d.Name == edgeagent.RelFailure.Name {
			return nil, fmt.Errorf("route %s: the name is a fixed relationship", d.Name)
		}
		p.routes = append(p.routes, route{rel: edgeagent.Relationship{Name: d.Name}, cond: d.Value})
	}
	if len(p.routes) == 0 {
		return nil, fmt.Errorf("no routes: add at least one dynamic property (route name: boolean expression)")
	}
	return p, nil
}

func (p *routeOnAttribute) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(batchSize)
	if len(batch) == 0 {
		return nil
	}
	matched := make([]int, 0, len(p.routes))
	for _, ff := range batch {
		matched = matched[:0]
		var err error
		for i, r := range p.routes {
			var v string
			if v, err = r.cond.Evaluate(ff); err != nil {
				err = fmt.Errorf("evaluating route %s: %w", r.rel.Name, err)
				break
			}
			if strings.EqualFold(strings.TrimSpace(v), "true") {
				matched = append(matched, i)
			}
		}
		switch {
		case err != nil:
			routeToFailure(s, ff, err)
		case len(matched) == 0:
			p.send(s, ff, relUnmatched)
		default:
			// Clone before changing the original, so clones start from
			// the incoming attributes.
			for _, i := range matched[1:] {
				p.send(s, s.Clone(ff), p.routes[i].rel)
			}
			p.send(s, ff, p.routes[matched[0]].rel)
		}
	}
	return nil
}

func (p *routeOnAttribute) send(s edgeagent.ProcessSession, ff *edgeagent.FlowFile, rel edgeagent.Relationship) {
	if ff.Attributes[AttrRoute] != rel.Name {
		ff = s.PutAttribute(ff, AttrRoute, rel.Name)
	}
	s.Provenance().Route(ff, rel, "route "+rel.Name)
	s.Transfer(ff, rel)
}
