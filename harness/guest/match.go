package guest

import (
	"fmt"
	"regexp"
)

// CompileTests compiles a test-selection regexp the way the guest applies
// it (suite -run): anchored at both ends, so "fork" selects the test named
// fork and not fork-tearing. Host-side matching of expectations and of
// declared tests uses the same function.
func CompileTests(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		if _, err2 := regexp.Compile(expr); err2 != nil {
			err = err2 // report the user's own text, not our wrapping
		}
		return nil, fmt.Errorf("test regexp %q: %w", expr, err)
	}
	return re, nil
}
