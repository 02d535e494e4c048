package userstream_test

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Two rules every service in docker-compose.yml must follow, written for any
// service, so that the ones added later are held to them too:
//   - state: a stateful service's data directory, as its configuration names
//     it, lies on a named volume, so `docker compose down` and an image
//     upgrade keep it;
//   - logins: only one-shot setup services (ones that others wait for with
//     service_completed_successfully) log in to PostgreSQL as the superuser;
//     a program logs in as its own role, waits for the migration service and
//     does not migrate.

// dataDirRule says where one kind of stateful image keeps its data. Each
// default below was read in the image's own files (cited), not remembered.
// Add a rule when you add a stateful image.
type dataDirRule struct {
	name    string
	applies func(s types.ServiceConfig) bool
	// volumes returns the image's own VOLUME declarations: Docker mounts a
	// fresh anonymous volume at each one that no explicit mount covers
	// exactly, even inside a named volume, and data there is lost.
	volumes func(s types.ServiceConfig) []string
	// dirs returns the data directories, or findings when the configuration
	// leaves them in the container.
	dirs func(s types.ServiceConfig) (dirs, findings []string)
}

var dataDirRules = []dataDirRule{
	{
		// The archiver (cmd/archiver, lake.Open): LAKE_URL file:///path is
		// the lake's folder; s3://, gs:// and azblob:// keep nothing in the
		// container. The image declares no VOLUME.
		name:    "archiver lake",
		applies: func(s types.ServiceConfig) bool { return env(s, "LAKE_URL") != "" },
		volumes: func(types.ServiceConfig) []string { return nil },
		dirs: func(s types.ServiceConfig) (dirs, findings []string) {
			u, err := url.Parse(env(s, "LAKE_URL"))
			if err != nil || u.Scheme != "file" {
				return nil, nil
			}
			if u.Host != "" && u.Host != "localhost" {
				return nil, []string{fmt.Sprintf("LAKE_URL %s is relative to the working directory: give an absolute file:/// path on a named volume", env(s, "LAKE_URL"))}
			}
			return []string{u.Path}, nil
		},
	},
	{
		// apache/kafka docker/jvm/launch formats and runs with a
		// server.properties written from the KAFKA_* variables alone
		// (core/.../docker/KafkaDockerWrapper.scala); without KAFKA_LOG_DIRS
		// log.dirs defaults to /tmp/kafka-logs. The format step fails on a
		// meta.properties of another cluster.id, so CLUSTER_ID is pinned.
		name: "kafka",
		applies: func(s types.ServiceConfig) bool {
			return imageRepo(s.Image) == "kafka" || env(s, "KAFKA_PROCESS_ROLES") != "" || env(s, "KAFKA_LOG_DIRS") != ""
		},
		volumes: func(types.ServiceConfig) []string {
			return []string{"/etc/kafka/secrets", "/var/lib/kafka/data", "/mnt/shared/config"} // docker/jvm/Dockerfile
		},
		dirs: func(s types.ServiceConfig) (dirs, findings []string) {
			switch {
			case env(s, "KAFKA_LOG_DIRS") != "":
				dirs = strings.Split(env(s, "KAFKA_LOG_DIRS"), ",")
			case env(s, "KAFKA_LOG_DIR") != "":
				dirs = []string{env(s, "KAFKA_LOG_DIR")}
			default:
				findings = append(findings, "KAFKA_LOG_DIRS is not set: log.dirs defaults to a directory under /tmp in the container")
			}
			if d := env(s, "KAFKA_METADATA_LOG_DIR"); d != "" {
				dirs = append(dirs, d)
			}
			if env(s, "KAFKA_PROCESS_ROLES") != "" && env(s, "CLUSTER_ID") == "" {
				findings = append(findings, "CLUSTER_ID is not set: a recreated container must format with the cluster.id its volume already holds")
			}
			return dirs, findings
		},
	},
	{
		// docker-library/postgres: ENV PGDATA and VOLUME
		// /var/lib/postgresql/data up to 17; from 18 PGDATA is
		// /var/lib/postgresql/$PG_MAJOR/docker and the VOLUME
		// /var/lib/postgresql (17/bookworm/Dockerfile, 18/bookworm/Dockerfile).
		name:    "postgres",
		applies: runsPostgresServer,
		volumes: func(s types.ServiceConfig) []string {
			if major, err := postgresMajor(s.Image); err == nil && major >= 18 {
				return []string{"/var/lib/postgresql"}
			}
			return []string{"/var/lib/postgresql/data"}
		},
		dirs: func(s types.ServiceConfig) (dirs, findings []string) {
			if d := env(s, "PGDATA"); d != "" {
				return []string{d}, nil
			}
			major, err := postgresMajor(s.Image)
			switch {
			case err != nil:
				return nil, []string{"set PGDATA or pin the image's major version: the default data directory depends on it"}
			case major >= 18:
				return []string{fmt.Sprintf("/var/lib/postgresql/%d/docker", major)}, nil
			default:
				return []string{"/var/lib/postgresql/data"}, nil
			}
		},
	},
	{
		// grafana/grafana Dockerfile: ENV GF_PATHS_DATA="/var/lib/grafana".
		name:    "grafana",
		applies: func(s types.ServiceConfig) bool { return strings.HasPrefix(imageRepo(s.Image), "grafana") },
		volumes: func(types.ServiceConfig) []string { return nil },
		dirs: func(s types.ServiceConfig) ([]string, []string) {
			if d := env(s, "GF_PATHS_DATA"); d != "" {
				return []string{d}, nil
			}
			return []string{"/var/lib/grafana"}, nil
		},
	},
	{
		// prometheus/prometheus Dockerfile: WORKDIR and VOLUME /prometheus;
		// --storage.tsdb.path (a relative one is under the WORKDIR).
		name:    "prometheus",
		applies: func(s types.ServiceConfig) bool { return imageRepo(s.Image) == "prometheus" },
		volumes: func(types.ServiceConfig) []string { return []string{"/prometheus"} },
		dirs: func(s types.ServiceConfig) ([]string, []string) {
			for i, a := range s.Command {
				v, ok := strings.CutPrefix(a, "--storage.tsdb.path=")
				if !ok && a == "--storage.tsdb.path" && i+1 < len(s.Command) {
					v, ok = s.Command[i+1], true
				}
				if ok && !path.IsAbs(v) {
					v = path.Join("/prometheus", v)
				}
				if ok {
					return []string{v}, nil
				}
			}
			return []string{"/prometheus"}, nil
		},
	},
}

// stateFindings returns, one sentence each, every data directory in p that
// does not lie on a named volume.
func stateFindings(p *types.Project) []string {
	var out []string
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		for _, r := range dataDirRules {
			if !r.applies(s) {
				continue
			}
			dirs, findings := r.dirs(s)
			for _, f := range findings {
				out = append(out, name+": "+f)
			}
			for _, d := range dirs {
				if !onNamedVolume(p, s, r.volumes(s), d) {
					out = append(out, fmt.Sprintf("%s: data directory %s is not on a named volume", name, d))
				}
			}
		}
	}
	return out
}

// onNamedVolume reports whether the mount that holds dir (the deepest one
// whose target contains it) is a named volume declared by the project.
// imageVolumes are the image's VOLUME paths: anonymous mounts unless an
// explicit mount has the same target.
func onNamedVolume(p *types.Project, s types.ServiceConfig, imageVolumes []string, dir string) bool {
	mounts := slices.Clone(s.Volumes)
	for _, iv := range imageVolumes {
		if !slices.ContainsFunc(mounts, func(v types.ServiceVolumeConfig) bool { return path.Clean(v.Target) == iv }) {
			mounts = append(mounts, types.ServiceVolumeConfig{Type: types.VolumeTypeVolume, Target: iv}) // anonymous
		}
	}
	dir = path.Clean(dir)
	holder, depth := types.ServiceVolumeConfig{}, -1
	for _, v := range mounts {
		t := path.Clean(v.Target)
		if (dir == t || strings.HasPrefix(dir, strings.TrimSuffix(t, "/")+"/")) && len(t) > depth {
			holder, depth = v, len(t)
		}
	}
	if depth < 0 || holder.Type != types.VolumeTypeVolume || holder.Source == "" {
		return false
	}
	_, declared := p.Volumes[holder.Source]
	return declared
}

// login is one way a service logs in to PostgreSQL.
type login struct{ user, password, from string }

var dsnVar = regexp.MustCompile(`(^|_)(DATABASE_URL|DSN)$`)

// serviceLogins returns the PostgreSQL logins a service is configured with:
// every postgres:// URL in its environment or command, and PGUSER. A DSN
// variable that is not such a URL, or a URL without a user (libpq would
// then take PGUSER or the OS user), is returned as a finding.
func serviceLogins(s types.ServiceConfig) (logins []login, findings []string) {
	check := func(from, v string) {
		if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
			return
		}
		u, err := url.Parse(v)
		if err != nil || u.User == nil || u.User.Username() == "" {
			findings = append(findings, from+" names no user: write the role into the URL")
			return
		}
		pw, _ := u.User.Password()
		logins = append(logins, login{user: u.User.Username(), password: pw, from: from})
	}
	for k, v := range s.Environment {
		if v == nil {
			continue
		}
		check(k, *v)
		if dsnVar.MatchString(k) && !strings.Contains(*v, "://") {
			findings = append(findings, k+" is not a postgres:// URL, so its role cannot be checked")
		}
	}
	for _, a := range s.Command {
		check("command", a)
	}
	if u := env(s, "PGUSER"); u != "" {
		logins = append(logins, login{user: u, from: "PGUSER"})
	}
	return logins, findings
}

// loginFindings returns, one sentence each, every breach of the login rule.
func loginFindings(p *types.Project) []string {
	superusers := map[string]bool{}
	for _, s := range p.Services {
		if runsPostgresServer(s) {
			u := env(s, "POSTGRES_USER")
			if u == "" {
				u = "postgres" // docker-entrypoint.sh: file_env 'POSTGRES_USER' 'postgres'
			}
			superusers[u] = true
		}
	}
	// One-shot setup services: ones another service waits for to complete.
	oneShot := map[string]bool{}
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionCompletedSuccessfully {
				oneShot[dep] = true
			}
		}
	}
	var out, setup, migrations []string
	programs := map[string]bool{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		logins, findings := serviceLogins(s)
		for _, f := range findings {
			out = append(out, name+": "+f)
		}
		for _, l := range logins {
			switch {
			case superusers[l.user] && !oneShot[name]:
				out = append(out, fmt.Sprintf("%s: logs in as the superuser %s (%s); only one-shot setup services may", name, l.user, l.from))
			case superusers[l.user]:
				setup = append(setup, name)
				if strings.Contains(strings.Join(s.Command, " "), "migrate") {
					migrations = append(migrations, name)
				}
			default:
				programs[name] = true
			}
		}
	}
	for _, name := range p.ServiceNames() {
		if !programs[name] {
			continue
		}
		s := p.Services[name]
		if len(migrations) == 0 {
			out = append(out, name+": logs in as a role but does not wait for a one-shot migration service (there is none)")
		}
		for _, job := range setup {
			if d, ok := s.DependsOn[job]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				out = append(out, fmt.Sprintf("%s: logs in as a role but does not wait for %s with service_completed_successfully", name, job))
			}
		}
		if env(s, "MIGRATE") != "false" {
			out = append(out, name+": logs in as a role but does not set MIGRATE=false (a role cannot migrate)")
		}
	}
	return out
}

// runsPostgresServer reports whether s runs the postgres image's server: its
// docker-entrypoint.sh starts the server when the command is empty,
// "postgres" or starts with "-", and otherwise runs the command (psql...).
func runsPostgresServer(s types.ServiceConfig) bool {
	return imageRepo(s.Image) == "postgres" &&
		(len(s.Command) == 0 || s.Command[0] == "postgres" || strings.HasPrefix(s.Command[0], "-"))
}

func postgresMajor(image string) (int, error) {
	return strconv.Atoi(strings.SplitN(imageTag(image), ".", 2)[0])
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// imageRepo returns the last path element of an image's name, without tag or
// digest: "apache/kafka:4.1.0" gives "kafka".
func imageRepo(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return path.Base(image)
}

// imageTag returns an image's tag, or "" when it has none.
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}
