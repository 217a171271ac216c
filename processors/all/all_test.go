package all

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
)

func TestRegistry(t *testing.T) {
	specs := Registry().Specs()
	require.NotEmpty(t, specs)
	for _, s := range specs {
		t.Run(s.Type, func(t *testing.T) {
			if !s.Available() {
				// Known but not in this build: validation names the tag.
				require.NotEmpty(t, s.BuildTag, "a type without constructor names its build tag")
			}
			require.NotEmpty(t, s.Summary)
			require.NotEmpty(t, s.Description)
			require.NotEmpty(t, s.Relationships)
			seen := map[string]bool{}
			for _, p := range s.Properties {
				require.False(t, seen[p.Name], "duplicate property %s", p.Name)
				seen[p.Name] = true
				require.Regexp(t, `^[a-z][a-z0-9_]*$`, p.Name)
				require.NotEmpty(t, p.Description, p.Name)
				if p.Default != "" {
					require.Empty(t, p.CheckValue(p.Default), "default of %s", p.Name)
				}
				if p.Kind == edgeagent.KindEnum {
					require.NotEmpty(t, p.Allowed, p.Name)
				}
			}
		})
	}
}
