package patch

import (
	"testing"
	"time"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name, preamble            string
		title, author, body, date string
	}{
		{"format-patch", "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\nFrom: Ada Lovelace <ada@example.org>\nDate: Tue, 14 Nov 2023 22:13:20 +0100\nSubject: [PATCH v2 1/2] lib: one\n\nBody.\n---\n lib/x.c | 1 +\n",
			"lib: one", "Ada Lovelace <ada@example.org>", "Body.", "1699996400 +0100"},
		{"date with a zone comment", "From: Ada <ada@example.org>\nDate: Tue, 14 Nov 2023 22:13:20 +0100 (CET)\nSubject: [PATCH] lib: two\n\n",
			"lib: two", "Ada <ada@example.org>", "", "1699996400 +0100"},
		{"quilt description with Subject only", "Subject: [PATCH] mm: three\n\nWhy.\n\nSigned-off-by: X <x@y>\n---\nIndex: mm/x.c\n",
			"mm: three", "", "Why.\n\nSigned-off-by: X <x@y>", ""},
		{"encoded subject and author", "From: =?UTF-8?q?J=C3=B6rg?= <j@example.org>\nSubject: =?UTF-8?q?mm:_f=C3=BCnf?=\n\n",
			"mm: fünf", "Jörg <j@example.org>", "", ""},
		{"git log -p", "commit 1111111111111111111111111111111111111111\nAuthor: Bob <bob@example.org>\nDate:   Tue Nov 14 22:13:20 2023 +0100\n\n    lib: four\n\n    More.\n\n",
			"lib: four", "Bob <bob@example.org>", "More.", "1699996400 +0100"},
		{"no header", "Index: mm/x.c\n===================================================================\n", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, date := parseHeader(tt.preamble)
			var title, author, body string
			if h != nil {
				title, body = h.Title, h.Body
				if h.Author != nil {
					author = identity(h.Author)
				}
			}
			if title != tt.title || author != tt.author || body != tt.body || date != tt.date {
				t.Errorf("got %q %q %q %q\nwant %q %q %q %q", title, author, body, date, tt.title, tt.author, tt.body, tt.date)
			}
		})
	}
}

// Commit ids must not depend on the host's time zone.
func TestGitDateIgnoresLocalZone(t *testing.T) {
	saved := time.Local
	defer func() { time.Local = saved }()
	time.Local = time.FixedZone("IST", 5*3600+1800)
	tests := map[string]string{
		"2023-11-14":                      "1699920000 +0000",
		"Tue Nov 14 22:13:20 2023":        "1700000000 +0000",
		"2023-11-14 22:13:20 +0530":       "1699980200 +0530",
		"1700000000":                      "1700000000 +0000",
		"1700000000 -0800":                "1700000000 -0800",
		"Tue, 14 Nov 2023 22:13:20 +0000": "1700000000 +0000",
		"yesterday":                       "",
	}
	for in, want := range tests {
		if got := gitDate(in); got != want {
			t.Errorf("gitDate(%q) = %q, want %q", in, got, want)
		}
	}
}
