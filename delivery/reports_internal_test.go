package delivery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func failedReport(topic string) *kafka.Message {
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic,
		Error: kafka.NewError(kafka.ErrMsgTimedOut, "message timed out", false)}}
}

// A job that waits for Kafka before it says it is done (a backfill) must
// learn that its last record failed, however the failed report and the
// count race.
func TestFlushFailsWhenTheLastRecordsReportFailed(t *testing.T) {
	s := &Stream{}
	s.produced.Add(1)
	go func() {
		time.Sleep(5 * time.Millisecond)
		_ = s.report(failedReport("users.created.progress"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err == nil || !strings.Contains(err.Error(), "delivery failed") {
		t.Fatalf("Flush = %v, want the failed delivery", err)
	}
}

func TestAChunkWithAFailedRecordIsNeverDurable(t *testing.T) {
	s := &Stream{}
	c := &Chunk{}
	c.outstanding.Add(1)
	s.produced.Add(1)
	if err := s.report(failedReport("users.created")); err == nil {
		t.Fatal("a failed report ended nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Durable(ctx, c, []byte("snapshot/users_cdc"), []byte("{}"))
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "delivery failed") {
		t.Fatalf("Durable = %v, want the failed delivery at once", err)
	}
}
