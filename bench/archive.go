package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/envelope"
)

// archiveResult compares the archiver with a plain consumer reading the same
// topic in the same run.
type archiveResult struct {
	events     int
	partitions int
	consumer   time.Duration // a plain consumer reading every record, nothing else
	archiver   time.Duration // archiver start until the lake's files cover every offset
	cpu        time.Duration
	peakRSS    int64
	files      []int64 // sizes
}

func (r archiveResult) consumerRate() float64 { return float64(r.events) / r.consumer.Seconds() }
func (r archiveResult) archiverRate() float64 { return float64(r.events) / r.archiver.Seconds() }

// archive fills a topic with user.created.v1 records as the streamer writes
// them, reads it once with a plain consumer (the ceiling) and once with the
// archiver into a file:// lake with its default roll limits.
func (b *bench) archive(ctx context.Context, events int) (archiveResult, error) {
	r := archiveResult{events: events, partitions: 6}
	topic := b.name("archive")
	if err := fillTopic(ctx, b.cfg.kafka, topic, r.partitions, events); err != nil {
		return r, fmt.Errorf("fill topic: %w", err)
	}
	var err error
	if r.consumer, err = consumeAll(ctx, b.cfg.kafka, topic, events); err != nil {
		return r, fmt.Errorf("plain consumer: %w", err)
	}

	root, err := os.MkdirTemp("", "userstream-bench-lake-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(root)
	port, err := freePort()
	if err != nil {
		return r, err
	}
	// Default roll limits: with 5 minutes of age, the last file of each
	// partition is still open when every record has been read, so the run
	// ends with a SIGTERM, which publishes the open files; the time runs
	// until the process has exited with every offset in a file.
	started := time.Now()
	p, err := start(filepath.Join(b.cfg.bin, "archiver"), append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS="+b.cfg.kafka,
		"KAFKA_TOPIC="+topic, "KAFKA_GROUP_ID="+topic, "LAKE_URL=file://"+root, "LOG_LEVEL=warn",
		fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", port)), port, "run")
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop()
		}
	}()
	for metric(port, "userstream_archiver_records_read_total") < float64(events) {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case err := <-p.done:
			return r, fmt.Errorf("archiver exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.cpu, r.peakRSS = p.cpu(), p.status("VmHWM")
	stopped = true
	if err := p.stop(); err != nil {
		return r, fmt.Errorf("archiver stop: %w", err)
	}
	r.archiver = time.Since(started)
	covered, sizes, err := lakeCovers(root, topic, events)
	if err != nil {
		return r, err
	}
	if !covered {
		return r, fmt.Errorf("after the archiver stopped, its files do not cover the %d records", events)
	}
	r.files = sizes
	return r, nil
}

// metric reads one unlabelled series from a program's /metrics (0 when absent).
func metric(port int, name string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// lakeCovers reports whether the lake's files hold offsets for events
// records in all, and the files' sizes.
func lakeCovers(root, topic string, events int) (bool, []int64, error) {
	var keys []string
	sizes := map[string]int64{}
	err := filepath.Walk(filepath.Join(root, topic), func(path string, info os.FileInfo, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil || info.IsDir() {
			return err
		}
		k := filepath.ToSlash(strings.TrimPrefix(path, root+"/"))
		keys = append(keys, k)
		sizes[k] = info.Size()
		return nil
	})
	if err != nil {
		return false, nil, err
	}
	// The bench's events share one date: a partition's files end at its
	// last record.
	var n int64
	var out []int64
	for _, fs := range archiver.ResumeFrom(topic, keys).Files {
		for _, f := range fs {
			out = append(out, sizes[f.Key()])
		}
		n += fs[len(fs)-1].Last + 1
	}
	slices.Sort(out)
	return n >= int64(events), out, nil
}

func fillTopic(ctx context.Context, bootstrap, topic string, partitions, events int) error {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		return err
	}
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: -1}})
	admin.Close()
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		return fmt.Errorf("create topic: %v %v", err, res)
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "enable.idempotence": true, "linger.ms": 20,
		"compression.type": "lz4", "log_level": 3})
	if err != nil {
		return err
	}
	defer p.Close()
	go func() {
		for range p.Events() { // delivery reports are checked by counting the topic below
		}
	}()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	enc := envelope.NewEncoder()
	source := []byte(envelope.SourceOf("7300000000000000000", "bench", "public", "users"))
	for i := 0; i < events; i++ {
		ceTime := day.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		lsn := uint64(0x1000000 + i*120)
		var headers []kafka.Header
		for _, h := range enc.Streamed("user.created.v1", fmt.Sprint(i+1), source, lsn, []byte(ceTime), envelope.AppendLSN(nil, lsn+40)) {
			headers = append(headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		m := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(fmt.Sprint(i + 1)),
			Value:          []byte(fmt.Sprintf(`{"username":"bench-user-%08d","country_code":"BE","created_at":%q}`, i, ceTime)),
			Headers:        headers,
		}
		for {
			err := p.Produce(m, nil)
			if err == nil {
				break
			}
			if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
				p.Flush(100)
				continue
			}
			return err
		}
	}
	for p.Flush(1000) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// consumeAll reads topic from the start with a plain consumer in a new group
// until it has events records, and returns how long that took.
func consumeAll(ctx context.Context, bootstrap, topic string, events int) (time.Duration, error) {
	started := time.Now()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": topic + "-plain",
		"auto.offset.reset": "earliest", "enable.auto.commit": false, "isolation.level": "read_committed", "log_level": 3})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		return 0, err
	}
	for n := 0; n < events; {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			n++
		case kafka.Error:
			if e.IsFatal() {
				return 0, e
			}
		}
	}
	return time.Since(started), nil
}

func (r archiveResult) markdown() string {
	var b strings.Builder
	b.WriteString("\n## The archiver: topic to Parquet files\n\n")
	fmt.Fprintf(&b, "A topic of %d user.created.v1 records (%d partitions, headers as the streamer writes them) read from the start. The ceiling is a plain consumer (read_committed, the same librdkafka) that only counts the records; the archiver's time runs from process start until the process, stopped with SIGTERM once it has read every record (which publishes its open files), has exited with every offset in a durable file (`file://` on the local disk, fsync and link, zstd, the default roll limits). *Peak RSS* and CPU are read just before the SIGTERM.\n\n", r.events, r.partitions)
	b.WriteString("| plain consumer | archiver | ratio | archiver CPU per million events | peak RSS | files | file size min / median / max | bytes per event |\n|---|---|---|---|---|---|---|---|\n")
	var total int64
	for _, s := range r.files {
		total += s
	}
	var sizes string
	if n := len(r.files); n > 0 {
		sizes = fmt.Sprintf("%s / %s / %s", mib(r.files[0]), mib(r.files[n/2]), mib(r.files[n-1]))
	}
	fmt.Fprintf(&b, "| %.0f records/s (%s) | %.0f events/s (%s) | %.2f | %.1f s | %s | %d | %s | %.1f |\n",
		r.consumerRate(), r.consumer.Round(10*time.Millisecond), r.archiverRate(), r.archiver.Round(10*time.Millisecond),
		r.archiverRate()/r.consumerRate(), r.cpu.Seconds()*1e6/float64(r.events), mib(r.peakRSS), len(r.files), sizes,
		float64(total)/float64(r.events))
	return b.String()
}
