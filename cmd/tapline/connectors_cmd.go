package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines/transforms"
)

func newConnectorsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "connectors [NAME]",
		Short: "List the registered sources, sinks and transforms with their config keys",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filter := ""
			if len(args) == 1 {
				filter = args[0]
			}
			list := connectorDocs(filter)
			if len(list) == 0 {
				all := append(append(connectors.Sources(), connectors.Sinks()...), transforms.Names()...)
				msg := fmt.Sprintf("no connector or transform named %q", filter)
				if s := connectors.Suggest(filter, all); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return &exitError{code: 1, msg: msg}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			writeConnectorDocs(cmd.OutOrStdout(), list)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

type connectorDoc struct {
	Kind    string         `json:"kind"`
	Name    string         `json:"name"`
	Summary string         `json:"summary"`
	Fields  []fieldDocJSON `json:"fields"`
}

type fieldDocJSON struct {
	Key      string `json:"key"`
	Type     string `json:"type"`
	Default  string `json:"default,omitempty"`
	Required bool   `json:"required,omitempty"`
	Doc      string `json:"doc"`
}

func connectorDocs(filter string) []connectorDoc {
	var out []connectorDoc
	add := func(kind, name, summary string, fields []connectors.FieldDoc) {
		if filter != "" && filter != name {
			return
		}
		d := connectorDoc{Kind: kind, Name: name, Summary: summary}
		for _, f := range fields {
			d.Fields = append(d.Fields, fieldDocJSON{Key: f.Key, Type: f.Type, Default: f.Default, Required: f.Required, Doc: f.Doc})
		}
		out = append(out, d)
	}
	for _, kind := range []connectors.Kind{connectors.KindSource, connectors.KindSink} {
		for _, name := range connectors.Default.Names(kind) {
			r, _ := connectors.Default.Lookup(kind, name)
			add(string(kind), name, r.Summary, r.Fields())
		}
	}
	for _, name := range transforms.Names() {
		r, _ := transforms.Lookup(name)
		add("transform", name, r.Summary, r.Fields())
	}
	return out
}

func writeConnectorDocs(w io.Writer, list []connectorDoc) {
	for i, d := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s: %s\n", d.Kind, d.Name, d.Summary)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, f := range d.Fields {
			def := f.Default
			if f.Required {
				def = "(required)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.Key, f.Type, def, strings.ReplaceAll(f.Doc, "\n", " "))
		}
		tw.Flush()
	}
}
