package history

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite", pure Go

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/runschema"
)

// schemaVersion changes whenever the tables do; an index of another
// version is rebuilt from its run directories, never migrated.
const schemaVersion = "4"

const ddl = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
	id TEXT PRIMARY KEY, started TEXT NOT NULL, finished TEXT, outcome TEXT NOT NULL, exit_code INTEGER NOT NULL,
	reason TEXT, config TEXT, source TEXT NOT NULL, dir TEXT, sha256 TEXT NOT NULL, shard TEXT, imported TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
	id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, cell_id TEXT NOT NULL,
	source TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, patchsets TEXT NOT NULL, suites TEXT NOT NULL,
	expect TEXT, source_id TEXT, patch_stack TEXT, kconfig_sha TEXT, kernel_version TEXT, kernel_key TEXT,
	outcome TEXT NOT NULL, raw_outcome TEXT NOT NULL, stage TEXT, reason TEXT, build_seconds REAL, boot_seconds REAL,
	first_event_seconds REAL, kernel_cached INTEGER, accel TEXT, dir TEXT, UNIQUE (run_id, cell_id));
CREATE TABLE IF NOT EXISTS results (
	id INTEGER PRIMARY KEY, cell_ref INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE, suite TEXT NOT NULL,
	test TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL, expected INTEGER NOT NULL, retry_status TEXT,
	retry_outcome TEXT, message TEXT, crash TEXT, duration_ms INTEGER NOT NULL, host_blamed INTEGER NOT NULL,
	UNIQUE (cell_ref, suite, test));
CREATE TABLE IF NOT EXISTS metric_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS metrics (
	result_ref INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE, name_ref INTEGER NOT NULL REFERENCES metric_names(id),
	value REAL NOT NULL, PRIMARY KEY (result_ref, name_ref)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_sha256 ON runs (sha256);
`

// DB is the history index: SQLite in WAL mode with one writer. It holds
// nothing the run directories do not: Rebuild makes it again from them.
type DB struct {
	Path string
	db   *sql.DB
}

// Open opens (creating) the index at path. An index written by another
// schema version is an error that says to rebuild it.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(30000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	// One connection: one writer, and the pragmas hold for every query.
	db.SetMaxOpenConns(1)
	d := &DB{Path: path, db: db}
	if err := d.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) init(ctx context.Context) error {
	if _, err := d.db.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("history %s: create tables: %w", d.Path, err)
	}
	var v string
	err := d.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'schema'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = d.db.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('schema', ?)`, schemaVersion)
		if err != nil {
			return fmt.Errorf("history %s: %w", d.Path, err)
		}
	case err != nil:
		return fmt.Errorf("history %s: %w", d.Path, err)
	case v != schemaVersion:
		return fmt.Errorf("history %s: index schema %s, this kharness writes %s: rebuild it (kharness history import --rebuild DIR...)", d.Path, v, schemaVersion)
	}
	return nil
}

// Close closes the index.
func (d *DB) Close() error { return d.db.Close() }

// Rebuild deletes the index at path and imports srcs into a new one.
func Rebuild(ctx context.Context, path string, srcs []string, log io.Writer) (*DB, error) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("history: rebuild: %w", err)
		}
	}
	d, err := Open(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := d.Import(ctx, srcs, log); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Imported says what Import did with one run record.
type Imported struct {
	Run    string
	Path   string
	Action string // added, replaced, unchanged
}

// Import adds run records to the index: a run directory (holding
// results.json), a directory of run directories (results/), a
// results.json, or a compressed record (.json.gz, the history branch).
// It is idempotent: a run already imported with the same content is left
// alone, one whose results.json changed (it was incomplete) is replaced.
func (d *DB) Import(ctx context.Context, srcs []string, log io.Writer) ([]Imported, error) {
	files, err := expand(srcs)
	if err != nil {
		return nil, err
	}
	var out []Imported
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		im, err := d.importFile(ctx, f)
		if err != nil {
			return out, err
		}
		if log != nil {
			fmt.Fprintf(log, "%s %s (%s)\n", im.Action, im.Run, im.Path)
		}
		out = append(out, im)
	}
	return out, nil
}

// expand turns import arguments into record files, each run once.
func expand(srcs []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, s := range srcs {
		fi, err := os.Stat(s)
		if err != nil {
			return nil, fmt.Errorf("history import: %w", err)
		}
		if !fi.IsDir() {
			add(s)
			continue
		}
		if _, err := os.Stat(filepath.Join(s, "results.json")); err == nil {
			add(filepath.Join(s, "results.json"))
			continue
		}
		ents, err := os.ReadDir(s)
		if err != nil {
			return nil, fmt.Errorf("history import: %w", err)
		}
		n := 0
		for _, e := range ents {
			p := filepath.Join(s, e.Name())
			switch {
			case strings.HasSuffix(e.Name(), ".json.gz"):
				add(p)
				n++
			case e.IsDir() || e.Type()&os.ModeSymlink != 0:
				if _, err := os.Stat(filepath.Join(p, "results.json")); err == nil {
					add(filepath.Join(p, "results.json"))
					n++
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("history import: %s holds no run (no results.json, no run directories, no .json.gz records)", s)
		}
	}
	return out, nil
}

// ReadRecord reads and checks a results.json (plain or gzipped).
func ReadRecord(path string) (*results.Run, []byte, error) {
	b, err := readRaw(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := parseRecord(path, b)
	return r, b, err
}

func readRaw(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("history: %s: %w", path, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("history: %s: %w", path, err)
		}
	}
	return b, nil
}

// parseRecord checks a record against the schema and decodes it.
func parseRecord(path string, b []byte) (*results.Run, error) {
	if err := runschema.Validate(b); err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	var r results.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	return &r, nil
}

func (d *DB) importFile(ctx context.Context, path string) (Imported, error) {
	b, err := readRaw(path)
	if err != nil {
		return Imported{}, err
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	// A record already imported as it is needs no parsing at all.
	var id string
	if err := d.db.QueryRowContext(ctx, `SELECT id FROM runs WHERE sha256 = ?`, digest).Scan(&id); err == nil {
		return Imported{Run: id, Path: path, Action: "unchanged"}, nil
	}
	r, err := parseRecord(path, b)
	if err != nil {
		return Imported{}, err
	}
	im := Imported{Run: r.ID, Path: path, Action: "added"}
	var old string
	err = d.db.QueryRowContext(ctx, `SELECT sha256 FROM runs WHERE id = ?`, r.ID).Scan(&old)
	switch {
	case err == nil:
		im.Action = "replaced"
	case !errors.Is(err, sql.ErrNoRows):
		return im, fmt.Errorf("history: %w", err)
	}
	dir := ""
	if filepath.Base(path) == "results.json" {
		dir = filepath.Dir(path)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return im, fmt.Errorf("history: %w", err)
	}
	defer tx.Rollback()
	if err := insertRun(ctx, tx, r, dir, digest); err != nil {
		return im, fmt.Errorf("history: import %s: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return im, fmt.Errorf("history: import %s: %w", path, err)
	}
	return im, nil
}

func tstr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func insertRun(ctx context.Context, tx *sql.Tx, r *results.Run, dir, digest string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, r.ID); err != nil {
		return err
	}
	shard := ""
	if r.Shard != nil {
		shard = fmt.Sprintf("%d/%d", r.Shard.Index, r.Shard.Count)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO runs (id, started, finished, outcome, exit_code, reason, config, source, dir, sha256, shard, imported)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.ID, tstr(r.Started), tstr(r.Finished), string(r.Outcome), r.ExitCode,
		r.Reason, r.Config, r.Source, dir, digest, shard, tstr(time.Now())); err != nil {
		return err
	}
	cellStmt, err := tx.PrepareContext(ctx, `INSERT INTO cells (run_id, cell_id, source, name, target, patchsets, suites, expect,
		source_id, patch_stack, kconfig_sha, kernel_version, kernel_key, outcome, raw_outcome, stage, reason, build_seconds,
		boot_seconds, first_event_seconds, kernel_cached, accel, dir) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer cellStmt.Close()
	resStmt, err := tx.PrepareContext(ctx, `INSERT INTO results (cell_ref, suite, test, status,
		outcome, expected, retry_status, retry_outcome, message, crash, duration_ms, host_blamed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer resStmt.Close()
	metStmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO metrics (result_ref, name_ref, value) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	defer metStmt.Close()
	names := map[string]int64{}
	for _, c := range r.Cells {
		expect := ""
		if c.Expect != nil {
			expect = jsonText(c.Expect)
		}
		res, err := cellStmt.ExecContext(ctx, r.ID, c.ID, r.Source, c.Name, c.Target, jsonText(c.PatchSets), jsonText(c.Suites), expect,
			c.SourceID, c.PatchStack, c.KconfigSHA, c.KernelVersion, c.KernelKey, string(c.Outcome), string(c.Raw), c.Stage,
			c.Reason, c.BuildSeconds, c.BootSeconds, c.FirstEventSeconds, b2i(c.KernelCached), c.Accel, c.Dir)
		if err != nil {
			return fmt.Errorf("cell %s: %w", c.ID, err)
		}
		cellRef, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("cell %s: %w", c.ID, err)
		}
		kernel := &results.Test{Suite: KernelSuite, Name: KernelTest, Outcome: c.Outcome, Message: c.Reason}
		if c.Crash != nil && len(c.Tests) == 0 {
			kernel.Crash = c.Crash.Title
		}
		rows := append([]*results.Test{kernel}, c.Tests...)
		seen := map[string]bool{}
		for i, t := range rows {
			var st Status
			var expected bool
			if i == 0 {
				st = KernelStatus(c)
			} else {
				st, expected = TestStatus(c, t)
			}
			id := t.Suite + "/" + t.Name
			if seen[id] {
				continue // a test reported twice keeps its first result
			}
			seen[id] = true
			var rs, ro string
			if t.Retry != nil {
				rs, ro = string(RetryStatus(c, t)), string(t.Retry.Outcome)
			}
			res, err := resStmt.ExecContext(ctx, cellRef, t.Suite, t.Name, string(st),
				string(t.Outcome), b2i(expected), rs, ro, t.Message, t.Crash, t.DurationMS, b2i(t.HostBlamed))
			if err != nil {
				return fmt.Errorf("cell %s test %s: %w", c.ID, id, err)
			}
			resRef, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("cell %s test %s: %w", c.ID, id, err)
			}
			for name, v := range t.Metrics {
				nameRef, err := metricName(ctx, tx, names, name)
				if err != nil {
					return fmt.Errorf("metric %s: %w", name, err)
				}
				if _, err := metStmt.ExecContext(ctx, resRef, nameRef, v); err != nil {
					return fmt.Errorf("cell %s test %s metric %s: %w", c.ID, id, name, err)
				}
			}
		}
	}
	return nil
}

// metricName is the id of a metric's name, added when new.
func metricName(ctx context.Context, tx *sql.Tx, cache map[string]int64, name string) (int64, error) {
	if id, ok := cache[name]; ok {
		return id, nil
	}
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM metric_names WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		var res sql.Result
		if res, err = tx.ExecContext(ctx, `INSERT INTO metric_names (name) VALUES (?)`, name); err == nil {
			id, err = res.LastInsertId()
		}
	}
	if err != nil {
		return 0, err
	}
	cache[name] = id
	return id, nil
}

// RunInfo is a run as the index has it.
type RunInfo struct {
	RunRef
	Finished time.Time
	Outcome  outcome.Outcome
	ExitCode int
	Reason   string
	Config   string
	Source   string
	Dir      string // the run directory, "" for a compressed record
	Shard    string
}

// Runs lists the runs in run order (start time, then id).
func (d *DB) Runs(ctx context.Context) ([]RunInfo, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT id, started, finished, outcome, exit_code, reason, config, source, dir, shard
		FROM runs ORDER BY started, id`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []RunInfo
	for rows.Next() {
		var ri RunInfo
		var started, finished string
		if err := rows.Scan(&ri.ID, &started, &finished, &ri.Outcome, &ri.ExitCode, &ri.Reason, &ri.Config, &ri.Source, &ri.Dir, &ri.Shard); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		ri.Started, _ = time.Parse(time.RFC3339Nano, started)
		ri.Finished, _ = time.Parse(time.RFC3339Nano, finished)
		ri.Seq = len(out) + 1
		out = append(out, ri)
	}
	return out, rows.Err()
}

// Observations reads every result, grouped by key in run order.
func (d *DB) Observations(ctx context.Context, runs []RunInfo) (map[Key][]Obs, error) {
	byID := map[string]RunInfo{}
	for _, r := range runs {
		byID[r.ID] = r
	}
	rows, err := d.db.QueryContext(ctx, `SELECT c.run_id, c.source, c.name, c.target, r.suite, r.test, r.status, r.outcome,
		r.expected, r.retry_status, r.message, r.crash, r.duration_ms, c.source_id, c.kernel_version, c.patch_stack,
		c.kconfig_sha, c.dir FROM results r JOIN cells c ON c.id = r.cell_ref`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	out := map[Key][]Obs{}
	for rows.Next() {
		var k Key
		var o Obs
		var runID string
		var expected int
		if err := rows.Scan(&runID, &k.Source, &k.Cell, &k.Target, &k.Suite, &k.Test, &o.Status, &o.Outcome, &expected,
			&o.Retry, &o.Message, &o.Crash, &o.DurationMS, &o.Rev.SourceID, &o.Rev.KernelVersion, &o.Rev.PatchStack,
			&o.Rev.KconfigSHA, &o.CellDir); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		ri, ok := byID[runID]
		if !ok {
			continue
		}
		o.Run, o.RunDir, o.Expected = ri.RunRef, ri.Dir, expected != 0
		out[k] = append(out[k], o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	for k := range out {
		sort.SliceStable(out[k], func(i, j int) bool { return out[k][i].Run.Seq < out[k][j].Run.Seq })
	}
	return out, nil
}

// CellInfo is one cell of one run, for the report's matrix and trends.
type CellInfo struct {
	RunID, CellID, Name, Target string
	PatchSets, Suites           []string
	Outcome, Raw                outcome.Outcome
	Stage, Reason               string
	BuildSeconds, BootSeconds   float64
	KernelCached                bool
	Dir                         string
}

// Cells lists the cells of every run.
func (d *DB) Cells(ctx context.Context) ([]CellInfo, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT run_id, cell_id, name, target, patchsets, suites, outcome, raw_outcome, stage, reason,
		build_seconds, boot_seconds, kernel_cached, dir FROM cells ORDER BY run_id, id`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []CellInfo
	for rows.Next() {
		var c CellInfo
		var patchsets, suites string
		var cached int
		if err := rows.Scan(&c.RunID, &c.CellID, &c.Name, &c.Target, &patchsets, &suites, &c.Outcome, &c.Raw, &c.Stage, &c.Reason,
			&c.BuildSeconds, &c.BootSeconds, &cached, &c.Dir); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		json.Unmarshal([]byte(suites), &c.Suites)
		json.Unmarshal([]byte(patchsets), &c.PatchSets)
		c.KernelCached = cached != 0
		out = append(out, c)
	}
	return out, rows.Err()
}

// Metric is one recorded value.
type Metric struct {
	RunID, CellID, Suite, Test, Name string
	Value                            float64
}

// Metrics reads the values of the named metrics in every run.
func (d *DB) Metrics(ctx context.Context, names ...string) ([]Metric, error) {
	if len(names) == 0 {
		return nil, nil
	}
	q := `SELECT c.run_id, c.cell_id, r.suite, r.test, n.name, m.value FROM metrics m JOIN metric_names n ON n.id = m.name_ref
		JOIN results r ON r.id = m.result_ref JOIN cells c ON c.id = r.cell_ref
		WHERE n.name IN (?` + strings.Repeat(", ?", len(names)-1) + `)`
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Metric
	for rows.Next() {
		var m Metric
		if err := rows.Scan(&m.RunID, &m.CellID, &m.Suite, &m.Test, &m.Name, &m.Value); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Load reads the whole index and runs the life cycle over it.
func (d *DB) Load(ctx context.Context) ([]RunInfo, map[Key][]Obs, error) {
	runs, err := d.Runs(ctx)
	if err != nil {
		return nil, nil, err
	}
	obs, err := d.Observations(ctx, runs)
	return runs, obs, err
}

// Refs are the runs' references.
func Refs(runs []RunInfo) []RunRef {
	out := make([]RunRef, len(runs))
	for i, r := range runs {
		out[i] = r.RunRef
	}
	return out
}
