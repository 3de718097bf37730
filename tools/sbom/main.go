// Command sbom writes an SPDX 2.3 JSON software bill of materials for Go
// binaries, from the module list the Go toolchain records in each binary
// (debug/buildinfo, what `go version -m` prints). scripts/dist.sh runs it
// over the release binaries.
//
//	go run ./tools/sbom -version v1.2.3 -created 2026-01-02T03:04:05Z -o sbom.spdx.json bin1 bin2...
package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type externalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type pkg struct {
	SPDXID           string        `json:"SPDXID"`
	Name             string        `json:"name"`
	Version          string        `json:"versionInfo,omitempty"`
	FileName         string        `json:"packageFileName,omitempty"`
	Download         string        `json:"downloadLocation"`
	FilesAnalyzed    bool          `json:"filesAnalyzed"`
	Checksums        []checksum    `json:"checksums,omitempty"`
	ExternalRefs     []externalRef `json:"externalRefs,omitempty"`
	LicenseConcluded string        `json:"licenseConcluded"`
	LicenseDeclared  string        `json:"licenseDeclared"`
	Copyright        string        `json:"copyrightText"`
	Comment          string        `json:"comment,omitempty"`
}

type relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

type document struct {
	SPDXVersion  string `json:"spdxVersion"`
	DataLicense  string `json:"dataLicense"`
	SPDXID       string `json:"SPDXID"`
	Name         string `json:"name"`
	Namespace    string `json:"documentNamespace"`
	CreationInfo struct {
		Created  string   `json:"created"`
		Creators []string `json:"creators"`
	} `json:"creationInfo"`
	Describes     []string       `json:"documentDescribes"`
	Packages      []pkg          `json:"packages"`
	Relationships []relationship `json:"relationships"`
}

func main() {
	version := flag.String("version", "dev", "release version of the binaries")
	created := flag.String("created", "", "creation time, RFC 3339 (the build date, so that the file is reproducible)")
	out := flag.String("o", "", "output file (default stdout)")
	flag.Parse()
	if flag.NArg() == 0 || *created == "" {
		fmt.Fprintln(os.Stderr, "usage: sbom -version V -created TIME [-o FILE] BINARY...")
		os.Exit(2)
	}
	doc, err := build(*version, *created, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
}

// spdxID makes an SPDX identifier: letters, digits, "." and "-" only.
func spdxID(parts ...string) string {
	s := strings.Join(parts, "-")
	return "SPDXRef-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

func build(version, created string, bins []string) (*document, error) {
	d := &document{SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", Name: "persys-" + version}
	d.CreationInfo.Created = created
	d.CreationInfo.Creators = []string{"Tool: persys-sbom"}
	mods := map[string]pkg{}
	var sums []string
	for _, bin := range bins {
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		sum, err := fileSHA256(bin)
		if err != nil {
			return nil, err
		}
		sums = append(sums, sum)
		base := filepath.Base(bin)
		var settings []string
		for _, s := range bi.Settings {
			if s.Key == "GOOS" || s.Key == "GOARCH" || s.Key == "CGO_ENABLED" {
				settings = append(settings, s.Key+"="+s.Value)
			}
		}
		id := spdxID("binary", base)
		d.Packages = append(d.Packages, pkg{SPDXID: id, Name: base, Version: version, FileName: base,
			Download: "NOASSERTION", Checksums: []checksum{{"SHA256", sum}},
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", Copyright: "NOASSERTION",
			Comment: fmt.Sprintf("main package %s, built with %s %s", bi.Path, bi.GoVersion, strings.Join(settings, " "))})
		d.Describes = append(d.Describes, id)
		deps := append([]*debugModule{{bi.Main.Path, version}, {"stdlib", bi.GoVersion}}, modulesOf(bi)...)
		for _, m := range deps {
			mid := spdxID("module", m.path, m.version)
			if _, ok := mods[mid]; !ok {
				p := pkg{SPDXID: mid, Name: m.path, Version: m.version, Download: "NOASSERTION",
					LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", Copyright: "NOASSERTION"}
				if m.path != "stdlib" && m.path != bi.Main.Path {
					p.Download = "https://proxy.golang.org/" + m.path + "/@v/" + m.version + ".zip"
					p.ExternalRefs = []externalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + m.path + "@" + m.version}}
				}
				mods[mid] = p
			}
			d.Relationships = append(d.Relationships, relationship{id, "CONTAINS", mid})
		}
	}
	ids := make([]string, 0, len(mods))
	for id := range mods {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d.Packages = append(d.Packages, mods[id])
	}
	for _, id := range d.Describes {
		d.Relationships = append(d.Relationships, relationship{"SPDXRef-DOCUMENT", "DESCRIBES", id})
	}
	// The namespace must be unique per document: derive it from the content.
	h := sha256.Sum256([]byte(strings.Join(sums, ",")))
	d.Namespace = "https://spdx.persys.dev/persys-" + version + "-" + hex.EncodeToString(h[:8])
	return d, nil
}

type debugModule struct{ path, version string }

// modulesOf lists the dependencies compiled into the binary, replacements
// resolved to what was really built.
func modulesOf(bi *buildinfo.BuildInfo) []*debugModule {
	var out []*debugModule
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		out = append(out, &debugModule{m.Path, m.Version})
	}
	return out
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
