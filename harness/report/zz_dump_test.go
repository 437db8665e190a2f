package report

import (
	"fmt"
	"os"
	"testing"
)

func TestDumpText(t *testing.T) {
	b, _ := os.ReadFile(os.Getenv("F"))
	for _, r := range Parse(b) {
		fmt.Printf("---- %s %q\n%s\n", r.Kind, r.Title, r.Text)
	}
}
