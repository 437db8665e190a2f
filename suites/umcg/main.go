// Command umcg is a kharness guest suite (see suite.yaml).
package main

import "github.com/kharness/kharness/suites/suite"

func main() {
	suite.Main("umcg")
}
