// Command deb builds the persys Debian package with nFPM used as a library
// (github.com/goreleaser/nfpm/v2, pinned in go.mod): the two binaries, the
// systemd units, example configuration and the maintainer scripts of
// deploy/debian. scripts/dist.sh runs it for every linux platform.
//
//	go run ./tools/deb -version v1.2.3 -arch amd64 -persys BIN -persysctl BIN -o DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	version := flag.String("version", "", "release version (v1.2.3, or anything git describe prints)")
	arch := flag.String("arch", "amd64", "Go architecture of the binaries (amd64, arm64)")
	persys := flag.String("persys", "", "path of the persys binary")
	persysctl := flag.String("persysctl", "", "path of the persysctl binary")
	root := flag.String("root", ".", "repository root (deploy/ and docs/ are read from it)")
	mtime := flag.String("mtime", "", "modification time of every file, RFC 3339 (the build date, for reproducible packages)")
	out := flag.String("o", ".", "output directory")
	flag.Parse()
	if *version == "" || *persys == "" || *persysctl == "" {
		fmt.Fprintln(os.Stderr, "usage: deb -version V -arch A -persys BIN -persysctl BIN [-root DIR] [-mtime T] [-o DIR]")
		os.Exit(2)
	}
	path, err := build(*version, *arch, *persys, *persysctl, *root, *mtime, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// debVersion turns a release version into a Debian one: no leading "v",
// a digit first, and "~" before pre-release parts so that 1.2.3~rc1 sorts
// before 1.2.3.
func debVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0.0.0-" + v
	}
	return strings.ReplaceAll(v, "-", "~")
}

func build(version, arch, persys, persysctl, root, mtime, out string) (string, error) {
	mt := time.Now().UTC()
	if mtime != "" {
		t, err := time.Parse(time.RFC3339, mtime)
		if err != nil {
			return "", fmt.Errorf("-mtime: %w", err)
		}
		mt = t
	}
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	in := func(rel string) string { return filepath.Join(root, rel) }
	contents := files.Contents{
		file(persys, "/usr/bin/persys", 0o755),
		file(persysctl, "/usr/bin/persysctl", 0o755),
		// Owners are fixed by postinst: the persys user does not exist
		// when dpkg unpacks the files.
		{Destination: "/etc/persys", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o750, Owner: "root", Group: "root"}},
		{Destination: "/var/lib/persys", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o750, Owner: "root", Group: "root"}},
	}
	for _, u := range []string{"persys-scheduler.service", "persys-gateway.service", "persys-agent.service"} {
		contents = append(contents, file(in("deploy/systemd/"+u), "/lib/systemd/system/"+u, 0o644))
	}
	for _, e := range []string{"scheduler.env.example", "gateway.env.example", "agent.env.example"} {
		contents = append(contents, file(in("deploy/systemd/"+e), "/usr/share/doc/persys/examples/"+e, 0o644))
	}
	for _, d := range []string{"docs/operations.md", "README.md"} {
		if _, err := os.Stat(in(d)); err == nil {
			contents = append(contents, file(in(d), "/usr/share/doc/persys/"+filepath.Base(d), 0o644))
		}
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "persys",
		Arch:          arch,
		Platform:      "linux",
		Version:       debVersion(version),
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "Persys Compute maintainers <maintainers@persys.dev>",
		Homepage:      "https://github.com/persys-dev/compute",
		License:       "Apache-2.0",
		Description: "scheduler-driven compute control plane\n" +
			"Persys Compute runs containers, Docker Compose stacks and QEMU virtual\n" +
			"machines across a fleet of nodes: persys (scheduler, gateway, agent, ca)\n" +
			"and persysctl. The systemd units start once /etc/persys/<role>.env exists.",
		MTime: mt,
		Overridables: nfpm.Overridables{
			// passwd: useradd/groupadd in postinst.
			Depends:    []string{"passwd"},
			Recommends: []string{"docker.io | docker-ce", "ca-certificates"},
			Suggests:   []string{"qemu-system-x86", "qemu-utils", "prometheus"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: in("deploy/debian/postinst"),
				PreRemove:   in("deploy/debian/prerm"),
				PostRemove:  in("deploy/debian/postrm"),
			},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	pkgr, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	path := filepath.Join(out, pkgr.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return "", err
	}
	return path, f.Close()
}
