package faults

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/lakeaudit"
	"github.com/userstream/userstream/internal/testenv"
)

// The archiver on a real S3 server (SeaweedFS, started by the scenario):
// the lake's fault scenarios, audited through another S3 client.

// s3Lake is a lake under prefix "lake" of a new bucket on a private S3
// server, reached directly.
func s3Lake(t *testing.T, st *stack) (*lakeStack, *testenv.S3Server) {
	srv := testenv.NewS3Server(t)
	return s3LakeOn(t, st, srv.Endpoint(), srv.Bucket(t), srv.Endpoint(), "lake"), srv
}

func TestOnS3ArchiverSIGKILLedUnderLoadLosesNothingAndNoFileChanges(t *testing.T) {
	inBothModes(t, func(t *testing.T, st *stack) {
		s, _ := s3Lake(t, st)
		kills(t, s)
	})
}

func TestOnS3ArchiverRidesOutTheStoreKilledAndRestarted(t *testing.T) {
	t.Parallel()
	sc := size()
	s, srv := s3Lake(t, newStack(t))
	s.streamer(0)
	a := s.archiver(0)
	// The store dies under an archiver that archives: the load starts once
	// it has its partitions, which can take seconds while the topic is new.
	// (A store down when they arrive is waited for too, but then no put
	// fails and the scenario would prove nothing about puts.)
	e2e.WaitFor(t, time.Minute, "the archiver to get its partitions", func() bool {
		return strings.Contains(a.Output(), "resumed from the lake")
	})
	load := e2e.StartLoad(s.api, "s3down", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
	srv.Kill()
	time.Sleep(sc.outage)
	srv.Start(t)
	load.Wait()
	if exited, err := a.Exited(0); exited {
		t.Fatalf("the archiver exited while the store was down: %v", err)
	}
	retries := strings.Count(a.Output(), "lake put failed; retrying")
	if retries == 0 {
		t.Errorf("no put failed while the store was down for %s: the scenario proves nothing", sc.outage)
	}
	s.finishLake(fmt.Sprintf("S3 server SIGKILLed for %s under the archiver", sc.outage), load,
		fmt.Sprintf("archiver kept running; %d puts retried, fetching paused %d times while the store was away", retries,
			strings.Count(a.Output(), "fetching paused")))
}

func TestOnS3ASlowStoreWhileASecondArchiverJoinsAndLeavesDuplicatesNothing(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	srv := testenv.NewS3Server(t)
	// Every put waits 1.5 s: revocations find files on their way in.
	slow := testenv.S3Proxy(t, srv.Endpoint(), func(_ int64, r *http.Request) (time.Duration, bool) {
		if r.Method == http.MethodPut {
			return 1500 * time.Millisecond, false
		}
		return 0, false
	})
	s := s3LakeOn(t, st, srv.Endpoint(), srv.Bucket(t), slow, "lake")
	load, note, both := joinAndLeave(t, s, "s3slow")
	// The point: revocations that found files still to put.
	busy := 0
	for _, p := range both {
		busy += len(regexp.MustCompile(`"files_to_put":[1-9]`).FindAllString(p.Output(), -1))
	}
	if busy == 0 {
		t.Errorf("no revocation found a file still to put: the scenario proves nothing")
	}
	s.finishLake("puts slowed to 1.5 s while a second archiver joins, then leaves, lake on S3", load,
		fmt.Sprintf("%s; %d revocations had files to put", note, busy))
}

func TestOnS3TwoLakesUnderTwoPrefixesOfOneBucketAreEachWholeAndApart(t *testing.T) {
	t.Parallel()
	sc := size()
	st := newStack(t)
	srv := testenv.NewS3Server(t)
	bucket := srv.Bucket(t)
	prod := s3LakeOn(t, st, srv.Endpoint(), bucket, srv.Endpoint(), "prod")
	staging := s3LakeOn(t, st, srv.Endpoint(), bucket, srv.Endpoint(), "team/staging")
	st.streamer(0)
	prod.archiver(0, "KAFKA_GROUP_ID=archiver-prod")
	staging.archiver(0, "KAFKA_GROUP_ID=archiver-staging")
	load := e2e.StartLoad(st.api, "s3prefixes", sc.rate, sc.rows)
	prod.finishLake("two archivers, two prefixes of one S3 bucket: prod", load, "each archiver in its own group")
	staging.finishLake("two archivers, two prefixes of one S3 bucket: team/staging", load, "each archiver in its own group")
	// Nothing outside the two prefixes: the bucket's root lists only them.
	root := lakeaudit.S3{Endpoint: srv.Endpoint(), AccessKey: testenv.S3AccessKey, SecretKey: testenv.S3SecretKey, Bucket: bucket.Name}
	if objs, err := root.Objects(st.topic); err != nil || len(objs) != 0 {
		t.Errorf("the bucket's root holds %d files of the topic (%v); want none outside the prefixes", len(objs), err)
	}
}

// Snapshot and backfill copies carry their users' own dates while live
// events carry today's: the archiver keeps one file per date open, so the
// file count follows sizes, ages and dates, not the interleaving.
func TestOnS3ABackfillOfOldDatesUnderLiveLoadAndArchiverKillsMakesFewFilesAndLosesNothing(t *testing.T) {
	t.Parallel()
	sc := size()
	st := newStack(t)
	s, _ := s3Lake(t, st)
	// Users created over the 30 days before the test, by SQL.
	if _, err := st.pool.Exec(context.Background(), `INSERT INTO users (username, country_code, created_at, api_version)
		SELECT 'old-' || i, 'BE', now() - interval '30 days' + i * interval '30 days' / $1, 'sql' FROM generate_series(1, $1) AS i`, sc.rows); err != nil {
		t.Fatal(err)
	}
	s.streamer(0)
	a := s.archiver(0)
	// The load runs until every kill is done, so each one lands under load.
	load := e2e.StartLoad(st.api, "s3dates", sc.rate/2, sc.rows*100)
	backfill := e2e.Start(t, "streamer backfill", testenv.Bin(t, "streamer"), []string{
		"DATABASE_URL=" + st.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + st.broker.Addr(), "KAFKA_TOPIC=" + st.topic,
		"REPLICATION_SLOT=" + st.slot, "MIGRATE=false", "DELIVERY=" + st.mode(),
	}, "backfill")
	for k := 0; k < sc.kills; k++ {
		e2e.WaitFor(t, time.Minute, "the archiver to write a file", func() bool { return strings.Contains(a.Output(), "file written") })
		time.Sleep(500 * time.Millisecond)
		a.Kill()
		a = s.archiver(0)
	}
	if exited, err := backfill.Exited(5 * time.Minute); !exited || err != nil {
		t.Fatalf("backfill: exited %v, %v\n%s", exited, err, backfill.Output())
	}
	time.Sleep(2 * time.Second)
	load.Stop()
	s.finishLake(fmt.Sprintf("backfill of 30 days of users under live load, archiver SIGKILL ×%d, lake on S3", sc.kills), load,
		"every user twice in the topic (streamed, then copied with its own date); once in users_created")
	files := lakeaudit.Files(t, s.store, st.topic)
	records := 0
	for _, recs := range lakeaudit.ReadVisible(t, st.broker.Addr(), st.topic) {
		records += len(recs)
	}
	if len(files)*10 > records {
		t.Errorf("%d files for %d records: the file count follows the records", len(files), records)
	}
	t.Logf("%d files for %d records", len(files), records)
}
