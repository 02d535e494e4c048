// Package devkafka runs a single-node Kafka-protocol broker for development and
// tests. It wraps franz-go's kfake: it speaks the Kafka wire protocol over TCP
// and persists its log to a folder, but it is not Apache Kafka and is never
// used in production.
package devkafka

import (
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config says where the broker listens and keeps its data.
type Config struct {
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// DataDir persists topics and offsets across a clean Close; empty keeps
	// everything in memory.
	DataDir string
	// Partitions is the partition count of auto-created topics (default 6).
	Partitions int
	// Log receives kfake's own log lines at warn level and above; nil discards.
	Log io.Writer
	// Auth, when set, makes the broker require SASL/PLAIN and check ACLs, as
	// a least-privilege managed Kafka does.
	Auth *Auth
}

// Auth lists the broker's SASL/PLAIN principals.
type Auth struct {
	// Admin bypasses every ACL (a Kafka super.users entry).
	Admin User
	// Users may do only what their ACLs allow.
	Users []User
}

// User is a SASL/PLAIN principal, User:<Name> in its ACLs.
type User struct {
	Name, Password string
	ACLs           []kfake.ACL
}

// Broker is a running broker. Close it to persist its state.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// Start binds the port and starts serving. A port in use is reported at once.
func Start(cfg Config) (*Broker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.WithLogger(kfake.BasicLogger(cfg.Log, kfake.LogLevelWarn)),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if a := cfg.Auth; a != nil {
		opts = append(opts, kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("PLAIN", a.Admin.Name, a.Admin.Password))
		for _, u := range a.Users {
			opts = append(opts, kfake.User("PLAIN", u.Name, u.Password, u.ACLs...))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka-protocol broker on 127.0.0.1:%d: %w", cfg.Port, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, fmt.Errorf("start kafka-protocol broker: want 1 listener, got %d", len(addrs))
	}
	return &Broker{cluster: c, addr: addrs[0]}, nil
}

// Addr is the bootstrap address, host:port.
func (b *Broker) Addr() string { return b.addr }

// Port is the bound TCP port.
func (b *Broker) Port() int {
	_, p, _ := net.SplitHostPort(b.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Close stops serving and, with a DataDir, writes the state a restart reloads
// (including idempotent-producer sequences, which a SIGKILL would lose).
func (b *Broker) Close() { b.cluster.Close() }
