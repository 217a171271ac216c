package processors

import (
	"context"
	"regexp"

	"edgeagent.dev"
)

// UpdateAttributeSpec returns the spec of UpdateAttribute, which sets and
// deletes flowfile attributes.
func UpdateAttributeSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "UpdateAttribute",
		Summary: "Sets attributes from expressions and deletes attributes matching a regular expression.",
		Description: "Each dynamic property sets the attribute of its name to its value, with expressions evaluated " +
			"against the incoming flowfile (all of them before any is applied). delete_attributes_expression " +
			"removes the incoming attributes whose whole name matches it, even those this processor also sets " +
			"(as in NiFi); uuid is never removed. A flowfile whose expressions fail to evaluate is penalized and " +
			"left in its queue, and the error is logged.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "delete_attributes_expression", Description: "Regular expression: the incoming attributes whose name matches it are deleted.", Kind: edgeagent.KindRegex},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		Dynamic: &edgeagent.DynamicSpec{
			Description: "The name is an attribute to set, the value its new value (expressions allowed).",
			Expressions: true,
		},
		New: newUpdateAttribute,
	}
}

type updateAttribute struct {
	set    []edgeagent.DynamicProperty
	delete *regexp.Regexp // nil: delete nothing
}

func newUpdateAttribute(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &updateAttribute{set: cfg.Dynamic}
	var err error
	if p.delete, err = optionalRegex(cfg, "delete_attributes_expression"); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *updateAttribute) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(batchSize)
	if len(batch) == 0 {
		return nil
	}
	for _, ff := range batch {
		updates, err := p.evaluate(ff)
		if err != nil {
			pc.Logger().Error("evaluating attribute expressions; penalizing the flowfile", "flowfile", ff.ID, "error", err)
			s.Return(s.Penalize(ff))
			continue
		}
		if p.delete != nil {
			for k := range ff.Attributes {
				if p.delete.MatchString(k) {
					delete(updates, k) // deleted even when set here, as in NiFi
					ff = s.RemoveAttribute(ff, k)
				}
			}
		}
		if len(updates) > 0 {
			ff = s.PutAttributes(ff, updates)
		}
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	return nil
}

// evaluate returns the attributes to set on ff that differ from its current
// values (nil when there are none).
func (p *updateAttribute) evaluate(ff *edgeagent.FlowFile) (map[string]string, error) {
	var updates map[string]string
	for _, d := range p.set {
		v, err := d.Value.Evaluate(ff)
		if err != nil {
			return nil, err
		}
		if old, ok := ff.Lookup(d.Name); ok && old == v {
			continue
		}
		if updates == nil {
			updates = make(map[string]string, len(p.set))
		}
		updates[d.Name] = v
	}
	return updates, nil
}
