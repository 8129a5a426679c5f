package postgres

import (
	"errors"
	"path/filepath"
	"strings"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }
func contains(s, sub string) bool         { return strings.Contains(s, sub) }

func filepathGlob(p string) ([]string, error) { return filepath.Glob(p) }
