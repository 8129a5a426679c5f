// Package redis is the "redis" sink: a view of the captured tables in Redis,
// one key per row, as a hash of column → string form or as a JSON document.
//
// Each batch is applied by one MULTI/EXEC transaction together with the
// pipeline's position, fenced by a WATCH of that position, which makes the
// sink a connectors.AtomicSink (exactly-once: a batch at or before the
// stored position is skipped). The transaction also stores the furthest
// origin positions applied (connectors.OriginTracker, for
// read-your-writes) and maintains optional secondary index sets. A
// truncate deletes every key matching the table's key pattern. For
// `tapline rebuild` (connectors.ShadowSink) a shadow copy is written under
// its own prefix and promoted by renaming its keys in one Lua script.
//
// Readers need nothing from tapline: they read plain keys
// (HGETALL orders:42, or GET for the json format).
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/tapline/tapline/connectors"
)

func init() {
	connectors.RegisterSink("redis", "materialize tables in Redis: one hash or JSON key per row, exactly-once", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// The value formats.
const (
	FormatHash = "hash" // one hash per row: column → string form
	FormatJSON = "json" // one string per row: the row as a JSON object
)

// Config is the redis sink's configuration.
type Config struct {
	Addr     string            `yaml:"addr" doc:"Redis server address, host:port"`
	Username string            `yaml:"username" doc:"ACL user name (Redis 6+); empty for the default user"`
	Password connectors.Secret `yaml:"password" doc:"password for AUTH"`
	DB       int               `yaml:"db" doc:"database number (SELECT)"`
	TLS      bool              `yaml:"tls" doc:"connect with TLS, verifying the server certificate against the system roots"`
	Timeout  time.Duration     `yaml:"timeout" doc:"how long one command may take (connect, read, write); a batch is one command"`

	KeyTemplate string        `yaml:"key_template" doc:"key of each row; placeholders {prefix} {db} {schema} {table} {pk} ({pk} exactly once; composite keys joined with ':'; ':' and '%' in values escaped as %3A and %25)"`
	KeyPrefix   string        `yaml:"key_prefix" doc:"text for {prefix}; put in front of the key when the template has no {prefix}"`
	Format      string        `yaml:"format" doc:"value of each row: hash (HSET column → string form) or json (the row as a JSON object, lossless as in event JSON)"`
	TTL         time.Duration `yaml:"ttl" doc:"expire each row key this long after its last write; 0 keeps rows until deleted"`
	Indexes     []Index       `yaml:"indexes" doc:"secondary index sets: for each {table, column}, a set <row key with {pk} = by:<column>:<value>> of the primary keys of the rows holding that value"`

	OffsetsPrefix string `yaml:"offsets_prefix" doc:"the position is stored at <offsets_prefix><pipeline>, the origins, table list and format next to it"`
	ShadowPrefix  string `yaml:"shadow_prefix" doc:"a rebuild writes its shadow keys under <shadow_prefix><pipeline>: until it is promoted"`
}

// Index asks for a secondary index set on one column of one table.
type Index struct {
	Table  string `yaml:"table" required:"true" doc:"the table, as schema.name, or name to match it in any schema"`
	Column string `yaml:"column" required:"true" doc:"the column whose values are indexed"`
}

// DefaultConfig returns the defaults: the local server, database 0, hash
// rows at {table}:{pk}, no TTL and no indexes.
func DefaultConfig() Config {
	return Config{
		Addr:          "127.0.0.1:6379",
		Timeout:       30 * time.Second,
		KeyTemplate:   "{table}:{pk}",
		Format:        FormatHash,
		OffsetsPrefix: "tapline:offsets:",
		ShadowPrefix:  "tapline:shadow:",
	}
}

// Validate checks the config, naming the field at fault.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr: give the server's host:port, e.g. 127.0.0.1:6379"))
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port (%v)", c.Addr, err))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("db: %d is not a database number (0, 1, ...)", c.DB))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is negative", c.Timeout))
	}
	if _, err := parseTemplate(c.KeyTemplate); err != nil {
		errs = append(errs, err)
	}
	if c.Format != FormatHash && c.Format != FormatJSON {
		msg := fmt.Sprintf("format: %q is not a format (want hash or json)", c.Format)
		if s := connectors.Suggest(c.Format, []string{FormatHash, FormatJSON}); s != "" {
			msg = fmt.Sprintf("format: %q is not a format (did you mean %q?)", c.Format, s)
		}
		errs = append(errs, errors.New(msg))
	}
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Millisecond) {
		errs = append(errs, fmt.Errorf("ttl: %s; want 0 (no expiry) or at least 1ms", c.TTL))
	}
	for i, ix := range c.Indexes {
		if ix.Table == "" || ix.Column == "" {
			errs = append(errs, fmt.Errorf("indexes[%d]: give both table and column", i))
		}
	}
	if c.OffsetsPrefix == "" {
		errs = append(errs, errors.New("offsets_prefix: must not be empty (the position key would be the bare pipeline name)"))
	}
	if c.ShadowPrefix == "" {
		errs = append(errs, errors.New("shadow_prefix: must not be empty (shadow keys would mix with live ones)"))
	}
	return errors.Join(errs...)
}

// Sink is the redis sink. Build it with New. It implements
// connectors.AtomicSink, connectors.OriginTracker, connectors.ShadowSink and
// connectors.Checker.
type Sink struct {
	cfg      Config
	tmpl     *keyTemplate
	log      *slog.Logger
	pipeline string

	// Test hooks: dial replaces the network dialer; applyLog, when set,
	// makes every applied batch also RPUSH the positions of the events it
	// applies to that list, inside the batch's transaction.
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	applyLog string

	mu        sync.Mutex // serializes Open, WriteBatch, Promote and Close
	shadow    bool
	rdb       *redis.Client
	opened    bool
	closed    bool
	meta      metaKeys
	keyPrefix string              // "" live; <shadow_prefix><pipeline>: for a shadow
	committed connectors.Position // the stored position, as this sink last saw or wrote it
	listed    map[string]bool     // the table list's entries (tableInfo.space) known to be stored
	// formatStored is set once the format key holds cfg.Format.
	formatStored bool
	tables       map[tableIdent]*tableInfo
	spaces       map[string]tableIdent // key pattern → the first table seen with it
	schemas      map[schemaKey]*schemaInfo

	omu     sync.Mutex
	origins connectors.Origins // committed origins, per connectors.OriginKey
}

var (
	_ connectors.AtomicSink    = (*Sink)(nil)
	_ connectors.OriginTracker = (*Sink)(nil)
	_ connectors.ShadowSink    = (*Sink)(nil)
	_ connectors.Checker       = (*Sink)(nil)
)

// New builds a redis sink; it connects in Open.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	tmpl, _ := parseTemplate(cfg.KeyTemplate)
	pipeline := rt.Pipeline
	if pipeline == "" {
		pipeline = "default"
	}
	return &Sink{
		cfg:      cfg,
		tmpl:     tmpl,
		log:      rt.Log(),
		pipeline: pipeline,
		listed:   map[string]bool{},
		tables:   map[tableIdent]*tableInfo{},
		spaces:   map[string]tableIdent{},
		schemas:  map[schemaKey]*schemaInfo{},
		origins:  connectors.Origins{},
	}, nil
}

// metaKeys are the keys the sink keeps its own state in.
type metaKeys struct {
	pos     string // the position: <offsets_prefix><pipeline>
	origins string // hash of origin key → position
	tables  string // the table list: set of the glob patterns of the tables written (tableInfo.space)
	format  string // the format the view is written in
	// oldLists is where earlier versions of the sink kept a list of each
	// table's keys, named in the table list (see migrate).
	oldLists string
}

func newMetaKeys(offsetsPrefix, pipeline string) metaKeys {
	base := offsetsPrefix + pipeline
	return metaKeys{pos: base, origins: base + ":origins", tables: base + ":tables", format: base + ":format", oldLists: base + ":keys:"}
}

func (m metaKeys) all() []string { return []string{m.pos, m.origins, m.tables, m.format} }

// UseShadow makes the sink write a shadow copy of the view: keys under
// <shadow_prefix><pipeline>:, its position under <pipeline>#shadow. Call it
// before Open.
func (s *Sink) UseShadow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shadow = true
}

func (s *Sink) newClient() *redis.Client {
	opt := &redis.Options{
		Addr:                  s.cfg.Addr,
		Username:              s.cfg.Username,
		Password:              s.cfg.Password.Reveal(),
		DB:                    s.cfg.DB,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1, // the engine retries, with backoff and a log line
		DialTimeout:           min(s.cfg.Timeout, 10*time.Second),
		ReadTimeout:           s.cfg.Timeout,
		WriteTimeout:          s.cfg.Timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              4,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
		Dialer: s.dial,
	}
	if s.cfg.Timeout == 0 {
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 10*time.Second, -1, -1
	}
	if s.cfg.TLS {
		host, _, _ := net.SplitHostPort(s.cfg.Addr)
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return redis.NewClient(opt)
}

// Open connects, checks the server (see Check), loads the committed
// origins and, for a shadow, deletes what an abandoned rebuild left.
func (s *Sink) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case s.opened:
		return nil
	}
	pipeline := s.pipeline
	if s.shadow {
		pipeline += "#shadow"
		s.keyPrefix = s.cfg.ShadowPrefix + s.pipeline + ":"
	}
	s.meta = newMetaKeys(s.cfg.OffsetsPrefix, pipeline)
	if s.rdb == nil {
		s.rdb = s.newClient()
	}
	info, err := s.serverInfo(ctx, s.rdb)
	if err != nil {
		return err
	}
	if err := info.required(s.cfg.Addr); err != nil {
		return err
	}
	if s.shadow {
		n, err := s.rdb.Exists(ctx, s.meta.all()...).Result()
		if err != nil {
			return s.wrap("look for an abandoned shadow", err)
		}
		if n > 0 {
			s.log.Info("redis: deleting the shadow copy an abandoned rebuild left", "position_key", s.meta.pos)
		}
		// It may take long (a SCAN of the database): no read timeout, only ctx.
		if err := clearScript.Run(ctx, s.rdb.WithTimeout(0), s.meta.all(), globEscape(s.keyPrefix)+"*").Err(); err != nil {
			return s.wrap("delete the abandoned shadow copy", err)
		}
	}
	listed, err := s.migrate(ctx, s.meta)
	if err != nil {
		return err
	}
	format, err := s.rdb.Get(ctx, s.meta.format).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return s.wrap("read the view's format at "+s.meta.format, err)
	case format != s.cfg.Format:
		return fmt.Errorf("redis: format: the view of pipeline %s was written as %s (%s), and the config says %s; rebuild it (tapline rebuild %s) to change its format, or give it another key_prefix and offsets_prefix",
			s.pipeline, format, s.meta.format, s.cfg.Format, s.pipeline)
	default:
		s.formatStored = true
	}
	s.listed = make(map[string]bool, len(listed))
	for _, sp := range listed {
		s.listed[sp] = true
	}
	if err := s.loadOrigins(ctx); err != nil {
		return err
	}
	pos, err := s.rdb.Get(ctx, s.meta.pos).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		s.committed = nil
	case err != nil:
		return s.wrap("read the position at "+s.meta.pos, err)
	default:
		s.committed = pos
	}
	s.opened = true
	s.log.Info("redis: sink open", "addr", s.cfg.Addr, "db", s.cfg.DB, "format", s.cfg.Format,
		"position_key", s.meta.pos, "shadow", s.shadow)
	return nil
}

// loadOrigins replaces the in-memory origins with the stored ones.
func (s *Sink) loadOrigins(ctx context.Context) error {
	m, err := s.rdb.HGetAll(ctx, s.meta.origins).Result()
	if err != nil {
		return s.wrap("read the applied origins at "+s.meta.origins, err)
	}
	s.omu.Lock()
	s.origins = connectors.Origins(m)
	s.omu.Unlock()
	return nil
}

// CommittedPosition returns the position stored with the last batch
// applied, or nil if none was.
func (s *Sink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	b, err := s.rdb.Get(ctx, s.meta.pos).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap("read the position at "+s.meta.pos, err)
	}
	return connectors.Position(b), nil
}

// AppliedOrigins returns a copy of the furthest origin positions applied
// and committed, per connectors.OriginKey. It is safe to call concurrently
// with WriteBatch.
func (s *Sink) AppliedOrigins(context.Context) (map[string]string, error) {
	s.omu.Lock()
	defer s.omu.Unlock()
	out := make(map[string]string, len(s.origins))
	for k, v := range s.origins {
		out[k] = v
	}
	return out, nil
}

// Promote replaces the live view with the shadow one in one Lua script:
// the live view's keys are deleted and the shadow keys renamed to their
// live names (keeping their TTLs), and the shadow position, origins, table
// list and format become the live ones. Readers see the old view or the
// new one, never a mix; Redis serves nobody else while the script runs
// (it scans the database, and moves the keys of both views). The sink is
// then closed.
func (s *Sink) Promote(ctx context.Context) error {
	s.mu.Lock()
	if !s.shadow || !s.opened || s.closed {
		s.mu.Unlock()
		return errors.New("redis: Promote needs a sink opened after UseShadow")
	}
	live := newMetaKeys(s.cfg.OffsetsPrefix, s.pipeline)
	// A live view no sink of this version has opened yet still has a
	// table list of key lists: the script needs its key patterns.
	if _, err := s.migrate(ctx, live); err != nil {
		s.mu.Unlock()
		cerr := s.Close(context.WithoutCancel(ctx))
		return errors.Join(err, cerr)
	}
	keys := append(live.all(), s.meta.all()...)
	// The script may run longer than one batch: no read timeout, only ctx.
	n, err := promoteScript.Run(ctx, s.rdb.WithTimeout(0), keys, s.keyPrefix, globEscape(s.keyPrefix)+"*").Int64()
	s.mu.Unlock()
	if err != nil {
		cerr := s.Close(context.WithoutCancel(ctx))
		return errors.Join(s.wrap("promote the shadow copy (if the connection was lost, the script may still have completed: compare "+live.pos+" with the shadow's position)", err), cerr)
	}
	s.log.Info("redis: promoted the shadow copy", "keys", n, "position_key", live.pos)
	return s.Close(ctx)
}

// migrate reads the table list of meta and returns its entries. A list
// written by an earlier version of the sink, which named a list of each
// table's keys, is turned into one of key patterns first, and those key
// lists deleted: the sink now finds a table's keys by its pattern.
func (s *Sink) migrate(ctx context.Context, meta metaKeys) ([]string, error) {
	entries, err := s.rdb.SMembers(ctx, meta.tables).Result()
	if err != nil {
		return nil, s.wrap("read the table list at "+meta.tables, err)
	}
	var old []string
	kept := entries[:0:0]
	for _, e := range entries {
		if strings.HasPrefix(e, meta.oldLists) {
			old = append(old, e)
		} else {
			kept = append(kept, e)
		}
	}
	if len(old) == 0 {
		return entries, nil
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, list := range old {
			// The list was named after the table's keys: <head>{pk}<tail>.
			head, tail, _ := strings.Cut(strings.TrimPrefix(list, meta.oldLists), "{pk}")
			pattern := globEscape(head) + "*" + globEscape(tail)
			p.SAdd(ctx, meta.tables, pattern)
			p.SRem(ctx, meta.tables, list)
			p.Unlink(ctx, list)
			kept = append(kept, pattern)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("convert the table list at "+meta.tables, err)
	}
	s.log.Info("redis: converted the table list of an earlier version; its key lists are deleted", "tables", len(old))
	return kept, nil
}

// Close closes the connection. A second Close, or one without Open,
// returns nil.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.rdb == nil {
		return nil
	}
	err := s.rdb.Close()
	s.rdb = nil
	if err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

func (s *Sink) usable() error {
	switch {
	case s.closed:
		return connectors.ErrClosed
	case !s.opened:
		return errors.New("redis: sink used before Open")
	}
	return nil
}

// Check connects and checks that the server can hold the view: it answers
// PING (with the configured credentials), is a primary (not a read-only
// replica), runs Redis 5.0 or later and is not a cluster node. It logs a
// warning when the server may lose what the sink has reported durable:
// without appendonly, or with an allkeys-* eviction policy, which may evict
// the stored position.
func (s *Sink) Check(ctx context.Context) error {
	rdb := s.newClient()
	defer rdb.Close()
	info, err := s.serverInfo(ctx, rdb)
	if err != nil {
		return err
	}
	if err := info.required(s.cfg.Addr); err != nil {
		return err
	}
	for _, w := range info.warnings() {
		s.log.Warn("redis: " + w)
	}
	return nil
}

// serverInfo is what INFO says about the server.
type serverInfo map[string]string

func (s *Sink) serverInfo(ctx context.Context, rdb *redis.Client) (serverInfo, error) {
	if err := rdb.Ping(ctx).Err(); err != nil {
		switch {
		case redis.HasErrorPrefix(err, "WRONGPASS"), redis.HasErrorPrefix(err, "NOAUTH"):
			return nil, fmt.Errorf("redis: %s refused the credentials: check username and password: %v", s.cfg.Addr, err)
		case redis.HasErrorPrefix(err, "ERR DB index"), redis.HasErrorPrefix(err, "DB index"):
			return nil, fmt.Errorf("redis: %s: db %d: %v (raise the server's databases setting or use a lower db)", s.cfg.Addr, s.cfg.DB, err)
		}
		return nil, s.wrap("connect to "+s.cfg.Addr+" (check addr, tls and that the server runs)", err)
	}
	txt, err := rdb.Info(ctx).Result()
	if err != nil {
		return nil, s.wrap("INFO", err)
	}
	info := serverInfo{}
	for _, line := range strings.Split(txt, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			info[k] = v
		}
	}
	return info, nil
}

// required returns an error when the server cannot hold the view.
func (info serverInfo) required(addr string) error {
	var errs []error
	if role := info["role"]; role != "" && role != "master" {
		errs = append(errs, fmt.Errorf("redis: %s is a read-only replica (role:%s); point addr at the primary", addr, role))
	}
	if info["cluster_enabled"] == "1" {
		errs = append(errs, fmt.Errorf("redis: %s runs in cluster mode, which the sink does not support (a batch touches keys of many slots); use a standalone server", addr))
	}
	if v := info["redis_version"]; v != "" {
		var major int
		if _, err := fmt.Sscanf(v, "%d.", &major); err == nil && major < 5 {
			errs = append(errs, fmt.Errorf("redis: %s runs Redis %s; the sink needs 5.0 or later", addr, v))
		}
	}
	return errors.Join(errs...)
}

// warnings lists the settings that weaken the sink's guarantees.
func (info serverInfo) warnings() []string {
	var out []string
	if p := info["maxmemory_policy"]; strings.HasPrefix(p, "allkeys-") {
		out = append(out, fmt.Sprintf("maxmemory-policy is %s: Redis may evict the stored position and table list, and the view then loses exactly-once and rebuild accuracy; use noeviction or a volatile-* policy", p))
	}
	if info["aof_enabled"] == "0" {
		out = append(out, "appendonly is off: a Redis restart loses the writes since the last snapshot, after tapline has acknowledged them upstream; set appendonly yes (and appendfsync always for no loss at all)")
	}
	return out
}

// wrap adds what the sink was doing to err and marks connection trouble
// and transient server states as retryable.
func (s *Sink) wrap(what string, err error) error {
	werr := fmt.Errorf("redis: %s: %w", what, err)
	if retryable(err) {
		return connectors.Retryable(werr)
	}
	return werr
}

func retryable(err error) bool {
	var nerr net.Error
	switch {
	case errors.Is(err, redis.ErrClosed), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &nerr), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "connection reset"),
		strings.Contains(err.Error(), "broken pipe"), strings.Contains(err.Error(), "connection refused"):
		return true
	}
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "NOREPLICAS"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
