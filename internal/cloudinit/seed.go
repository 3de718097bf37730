package cloudinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// VolumeLabel is the ISO 9660 volume id cloud-init's NoCloud source looks for.
const VolumeLabel = "cidata"

// SeedFile is the name of the ISO BuildSeed writes into its folder.
const SeedFile = "seed.iso"

// GenISOImage is the program WriteISO runs (genisoimage, or mkisofs from
// the same family).
var GenISOImage = "genisoimage"

// BuildSeed renders in and writes the NoCloud seed volume to dir/seed.iso
// (replacing an older one atomically). It returns the ISO's path.
func BuildSeed(ctx context.Context, dir string, in Input) (isoPath string, err error) {
	seed, err := Render(in)
	if err != nil {
		return "", err
	}
	isoPath = filepath.Join(dir, SeedFile)
	if err := WriteISO(ctx, isoPath, seed); err != nil {
		return "", err
	}
	return isoPath, nil
}

// WriteISO writes seed as an ISO 9660 volume labelled cidata (with Joliet
// and Rock Ridge names) at isoPath. The documents are staged in a private
// folder next to isoPath that is removed afterwards, since they may hold a
// password.
func WriteISO(ctx context.Context, isoPath string, seed Seed) error {
	dir := filepath.Dir(isoPath)
	stage, err := os.MkdirTemp(dir, ".seed-*")
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer os.RemoveAll(stage)
	files := []struct{ name, body string }{
		{"user-data", seed.UserData},
		{"meta-data", seed.MetaData},
	}
	if seed.NetworkConfig != "" {
		files = append(files, struct{ name, body string }{"network-config", seed.NetworkConfig})
	}
	if seed.VendorData != "" {
		files = append(files, struct{ name, body string }{"vendor-data", seed.VendorData})
	}
	args := []string{"-quiet", "-output", filepath.Join(stage, "seed.iso"), "-volid", VolumeLabel, "-joliet", "-rock"}
	for _, f := range files {
		p := filepath.Join(stage, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o600); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		args = append(args, p)
	}
	cmd := exec.CommandContext(ctx, GenISOImage, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("seed: %s is not installed: %w", GenISOImage, err)
		}
		return fmt.Errorf("seed: %s: %w: %s", GenISOImage, err, truncate(out, 512))
	}
	if err := os.Chmod(filepath.Join(stage, "seed.iso"), 0o600); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := os.Rename(filepath.Join(stage, "seed.iso"), isoPath); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// ReadVolumeLabel returns the volume identifier of an ISO 9660 image, read
// from its primary volume descriptor (sector 16).
func ReadVolumeLabel(isoPath string) (string, error) {
	f, err := os.Open(isoPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		return "", fmt.Errorf("read volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", errors.New("not an ISO 9660 primary volume descriptor")
	}
	label := pvd[40:72]
	end := len(label)
	for end > 0 && label[end-1] == ' ' {
		end--
	}
	return string(label[:end]), nil
}
