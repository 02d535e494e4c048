package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PublicationSpec is what the streamer needs a publication to publish.
type PublicationSpec struct {
	Name    string
	Table   string   // schema-qualified, e.g. public.users
	Columns []string // the column list; exactly these leave PostgreSQL
}

// Errors about the publication. Both need an operator: the message of an
// ErrPublication says what is wrong and the SQL that fixes it.
var (
	ErrPublication        = errors.New("publication does not match")
	ErrPublicationMissing = errors.New("publication does not exist")
)

// PublishedTable is a table as a passing CheckPublication found it.
type PublishedTable struct {
	OID uint32 // the relation id pgoutput's Relation messages carry
	// Fingerprint changes with every write to the publication's catalog
	// rows for the table (their oids and xmins): a change that was undone
	// again (a row filter added and removed, the table dropped from the
	// publication and added back) still changes it, although pgoutput
	// decoded the WAL in between without the table's rows.
	Fingerprint string
}

// CreateSQL is the statement that creates the publication as the streamer
// needs it: inserts only, exactly the column list, no row filter.
func (spec PublicationSpec) CreateSQL() string {
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s (%s) WITH (publish = 'insert')",
		pgx.Identifier{spec.Name}.Sanitize(), QuoteTable(spec.Table), QuoteColumns(spec.Columns))
}

// fixSQL brings an existing publication back to the spec. SET TABLE
// replaces the table list, column list and row filter at once; a FOR ALL
// TABLES publication cannot be altered into a table list.
func (spec PublicationSpec) fixSQL(allTables bool) string {
	name := pgx.Identifier{spec.Name}.Sanitize()
	if allTables {
		return fmt.Sprintf("DROP PUBLICATION %s; %s;", name, spec.CreateSQL())
	}
	return fmt.Sprintf("ALTER PUBLICATION %s SET TABLE %s (%s); ALTER PUBLICATION %s SET (publish = 'insert', publish_via_partition_root = false);",
		name, QuoteTable(spec.Table), QuoteColumns(spec.Columns), name)
}

// CreatePublication creates the publication; it needs the table's owner.
func CreatePublication(ctx context.Context, conn *pgx.Conn, spec PublicationSpec) error {
	_, err := conn.Exec(ctx, spec.CreateSQL())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // duplicate_object: another process created it first
	}
	if err != nil {
		return fmt.Errorf("create publication %s (run as the table's owner: %s): %w", spec.Name, spec.CreateSQL(), err)
	}
	return nil
}

// CheckPublication checks everything about the publication that decides
// which rows of the table reach the stream: that the table exists as a
// plain table, is a member by name (not through FOR ALL TABLES or a schema),
// with exactly the column list, no row filter, inserts published and
// publish_via_partition_root off. Any difference is an ErrPublication whose
// message lists the differences and the SQL that fixes them; a publication
// that does not exist is ErrPublicationMissing.
func CheckPublication(ctx context.Context, conn *pgx.Conn, spec PublicationSpec) (PublishedTable, error) {
	var (
		allTables, inserts, viaRoot, member, filtered, allColumns, viaSchema bool
		oid                                                                  *uint32
		relkind                                                              *string
		cols                                                                 []string
		fingerprint                                                          string
	)
	err := conn.QueryRow(ctx, `WITH t AS (SELECT c.oid, c.relkind, c.relnamespace FROM pg_class c WHERE c.oid = to_regclass($2::text))
		SELECT p.puballtables, p.pubinsert, p.pubviaroot,
			(SELECT t.oid FROM t), (SELECT t.relkind::text FROM t),
			r.prrelid IS NOT NULL, r.prqual IS NOT NULL, r.prrelid IS NOT NULL AND r.prattrs IS NULL,
			coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
			          WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs)), '{}'),
			EXISTS (SELECT 1 FROM pg_publication_namespace n JOIN t ON n.pnnspid = t.relnamespace WHERE n.pnpubid = p.oid),
			format('publication %s/%s, member %s/%s, table %s', p.oid, p.xmin, r.oid, r.xmin, (SELECT t.oid FROM t))
		FROM pg_publication p
		LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid AND r.prrelid = (SELECT t.oid FROM t)
		WHERE p.pubname = $1`, spec.Name, QuoteTable(spec.Table)).
		Scan(&allTables, &inserts, &viaRoot, &oid, &relkind, &member, &filtered, &allColumns, &cols, &viaSchema, &fingerprint)
	if errors.Is(err, pgx.ErrNoRows) {
		return PublishedTable{}, fmt.Errorf("publication %s: %w", spec.Name, ErrPublicationMissing)
	}
	if err != nil {
		return PublishedTable{}, fmt.Errorf("read publication %s: %w", spec.Name, err)
	}
	if oid == nil {
		return PublishedTable{}, fmt.Errorf("%w: table %s does not exist (renamed, moved to another schema or dropped?); the events are made from it", ErrPublication, spec.Table)
	}
	var problems []string
	if relkind != nil && *relkind != "r" {
		problems = append(problems, fmt.Sprintf("%s is not a plain table (relkind %s): changes of a partitioned table arrive under its partitions' names", spec.Table, *relkind))
	}
	switch {
	case allTables:
		problems = append(problems, "it is FOR ALL TABLES, which publishes every column")
	case viaSchema:
		problems = append(problems, fmt.Sprintf("it publishes %s through FOR TABLES IN SCHEMA, which publishes every column", spec.Table))
	case !member:
		problems = append(problems, fmt.Sprintf("it does not include %s", spec.Table))
	}
	if filtered {
		problems = append(problems, fmt.Sprintf("it has a row filter (WHERE) on %s: filtered rows are never streamed", spec.Table))
	}
	want := slices.Sorted(slices.Values(spec.Columns))
	if member && (allColumns || !slices.Equal(slices.Sorted(slices.Values(cols)), want)) {
		got := "every column"
		if !allColumns {
			got = fmt.Sprintf("%q", cols)
		}
		problems = append(problems, fmt.Sprintf("its column list for %s is %s, want exactly %q", spec.Table, got, spec.Columns))
	}
	if !inserts {
		problems = append(problems, "it does not publish inserts")
	}
	if viaRoot {
		problems = append(problems, "publish_via_partition_root is on")
	}
	if len(problems) > 0 {
		return PublishedTable{}, fmt.Errorf("%w: publication %s: %s. Fix it as the table's owner: %s",
			ErrPublication, spec.Name, strings.Join(problems, "; "), spec.fixSQL(allTables))
	}
	return PublishedTable{OID: *oid, Fingerprint: fingerprint}, nil
}
