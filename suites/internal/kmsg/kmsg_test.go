package kmsg

import "testing"

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"6,1234,567890,-;umcg: killing task 12: cannot read its umcg_task\n", "umcg: killing task 12: cannot read its umcg_task"},
		{"4,1,2,-;line\n SUBSYSTEM=x\n", "line"},
		{"no prefix", "no prefix"},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var r *Reader
	if l := r.Lines(0); l != nil {
		t.Errorf("a nil Reader read %q", l)
	}
}
