//go:build tools

// Package tools pins cert-manager's controller and cainjector for the test bed.
//
// v1.11.5 is the newest cert-manager release whose module still holds its binaries: from
// v1.12.0 on, cmd/controller, cmd/cainjector, ... are nested modules whose module paths
// (github.com/cert-manager/cert-manager/controller-binary, .../cainjector-binary) do not match
// their directories (cmd/controller, cmd/cainjector), so the Go module proxy serves neither
// path (404), and the github.com/cert-manager/cert-manager module zip leaves cmd/ out. (They
// also require cert-manager at v0.0.0 through `replace ... => ../../`, which works only in a
// checkout of the repository.)
package tools

import (
	_ "github.com/cert-manager/cert-manager/cmd/cainjector"
	_ "github.com/cert-manager/cert-manager/cmd/controller"
)
