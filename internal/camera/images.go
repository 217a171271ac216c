package camera

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// imageExts are the extensions of the files an image directory source reads.
var imageExts = []string{".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}

// ListImages returns the image files directly in dir (by extension, not
// hidden), sorted by name.
func ListImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing images in %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !slices.Contains(imageExts, strings.ToLower(filepath.Ext(name))) {
			continue
		}
		out = append(out, filepath.Join(dir, name))
	}
	slices.Sort(out)
	return out, nil
}
