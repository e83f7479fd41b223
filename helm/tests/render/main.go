// weft-helm-render renders a Helm chart the way `helm template` does, for tests on machines
// without helm: Go's text/template with the sprig function library (Helm's own choice) and
// Helm's additions (include, tpl, required, toYaml, fromYaml, toJson), strict about missing
// values (as `helm lint --strict`), and .Files (Get, Glob, AsConfig) over the chart's files
// outside templates/. Not covered: lookup, Capabilities beyond KubeVersion, .helmignore,
// subcharts, and Helm's post-render sorting of objects by kind.
//
//	weft-helm-render CHART_DIR [-n NAMESPACE] [-r RELEASE] [-f VALUES.yaml]... [--notes]
//
// Prints the rendered manifests (each preceded by "# Source: <template>") or, with --notes,
// NOTES.txt. Each rendered document is parsed as YAML with duplicate keys refused; errors go to
// stderr with exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "weft-helm-render: "+format+"\n", args...)
	os.Exit(1)
}

func readYaml(path string) map[string]interface{} {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		fail("%s: %v", path, err)
	}
	return out
}

// merge overlays src onto dst (maps merged recursively, anything else replaced), as Helm merges
// -f files over values.yaml.
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// Helm's toYaml marshals through JSON (sigs.k8s.io/yaml); yaml.v3 with a 2-space indent gives
// the same YAML up to list indentation, which nindent makes irrelevant.
func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// chartFiles is Helm's .Files: the chart's files by path relative to the chart directory.
type chartFiles map[string][]byte

// Get returns a file's content ("" if there is no such file), as Helm's Files.Get.
func (f chartFiles) Get(name string) string { return string(f[name]) }

// Glob returns the files whose path matches the pattern (path.Match syntax).
func (f chartFiles) Glob(pattern string) chartFiles {
	out := chartFiles{}
	for name, data := range f {
		if ok, _ := filepath.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

// AsConfig renders the files as a ConfigMap's data: base name -> content.
func (f chartFiles) AsConfig() string {
	m := map[string]string{}
	for name, data := range f {
		m[filepath.Base(name)] = string(data)
	}
	return toYaml(m)
}

func loadFiles(chartDir string) chartFiles {
	files := chartFiles{}
	err := filepath.WalkDir(chartDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		if d.IsDir() {
			if rel == "templates" {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	return files
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: weft-helm-render CHART_DIR [-n NS] [-r RELEASE] [-f VALUES]... [--notes]")
	}
	chartDir := os.Args[1]
	ns, release, notes := "default", "release-name", false
	var valueFiles []string
	for i := 2; i < len(os.Args); i++ {
		next := func() string {
			if i+1 >= len(os.Args) {
				fail("%s needs a value", os.Args[i])
			}
			i++
			return os.Args[i]
		}
		switch os.Args[i] {
		case "-n":
			ns = next()
		case "-r":
			release = next()
		case "-f":
			valueFiles = append(valueFiles, next())
		case "--notes":
			notes = true
		default:
			fail("unknown argument %q", os.Args[i])
		}
	}

	chart := readYaml(filepath.Join(chartDir, "Chart.yaml"))
	values := readYaml(filepath.Join(chartDir, "values.yaml"))
	for _, f := range valueFiles {
		merge(values, readYaml(f))
	}
	str := func(k string) string { s, _ := chart[k].(string); return s }
	data := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": ns, "Service": "Helm", "IsInstall": true,
			"IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": str("name"), "Version": str("version"), "AppVersion": str("appVersion"),
		},
		"Files": loadFiles(chartDir),
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"},
		},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYaml
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	funcs["include"] = func(name string, d interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, d)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, d interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, d)
		return buf.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	root.Funcs(funcs).Option("missingkey=error")

	dir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(dir)
	if err != nil {
		fail("%v", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			fail("%v", err)
		}
		name := "templates/" + e.Name()
		if _, err := root.New(name).Parse(string(text)); err != nil {
			fail("%v", err)
		}
		names = append(names, name)
	}
	sort.Strings(names)

	var out bytes.Buffer
	for _, name := range names {
		base := filepath.Base(name)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			fail("%v", err)
		}
		if notes {
			out.Write(buf.Bytes())
			continue
		}
		// Helm splits on document markers and drops empty documents.
		for _, doc := range strings.Split("\n"+buf.String(), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var node yaml.Node
			if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
				fail("%s renders invalid YAML: %v\n%s", name, err, doc)
			}
			if len(node.Content) == 0 {
				continue // only comments
			}
			fmt.Fprintf(&out, "---\n# Source: weft/%s\n%s\n", name, strings.TrimLeft(doc, "\n"))
		}
	}
	os.Stdout.Write(out.Bytes())
}
