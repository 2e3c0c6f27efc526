// captive-check: does Horizon's / stellar-rpc's captive-core parser accept a file?
//
//	captive-check --passphrase "Test SDF Network ; September 2015" [--history-url URL]... FILE...
//
// For each FILE it calls ledgerbackend.NewCaptiveCoreTomlFromData with Strict: true,
// as Horizon does for --captive-core-config-path and stellar-rpc always does.
// Exit 0 when every file is accepted; 1 with "FILE: error" lines otherwise; 2 on usage.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/stellar/go-stellar-sdk/ingest/ledgerbackend"
)

type urls []string

func (u *urls) String() string     { return strings.Join(*u, ",") }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

func main() {
	passphrase := flag.String("passphrase", "", "the network passphrase the process runs with")
	var history urls
	flag.Var(&history, "history-url", "a history archive URL the process runs with (repeatable)")
	flag.Parse()
	if *passphrase == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: captive-check --passphrase P [--history-url URL]... FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range flag.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		_, err = ledgerbackend.NewCaptiveCoreTomlFromData(data, ledgerbackend.CaptiveCoreTomlParams{
			NetworkPassphrase:  *passphrase,
			HistoryArchiveURLs: history,
			Strict:             true,
		})
		if err != nil {
			fmt.Printf("%s: %s\n", path, strings.ReplaceAll(err.Error(), "\n", " "))
			failed = true
			continue
		}
		fmt.Printf("%s: accepted\n", path)
	}
	if failed {
		os.Exit(1)
	}
}
