//go:build tools

// Package tools pins CoreDNS for the test bed.
package tools

import _ "github.com/coredns/coredns"
