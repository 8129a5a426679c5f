#!/usr/bin/env bash
# scripts/services.sh: install, configure and start the local services that
# tapline's integration tests talk to, then wait until each one answers.
#
# Run by `make services` and as the first step of `make test`, so it runs on
# every test run. It is idempotent: when everything is already configured and
# running it only checks (well under a second) and restarts nothing. A service
# is restarted only when a setting that needs a restart has a wrong *running*
# value.
#
#   as root (Debian bookworm): installs missing packages, fixes the settings,
#                              starts what is down, waits, prints a summary.
#   as non-root, or --check:   only checks; exits 0 if all is right, else 1
#                              with a list of what root has to do.
#
# Services (all on 127.0.0.1) and the settings tests rely on:
#   PostgreSQL (installed major version, cluster "main") on :5432
#       wal_level=logical, max_replication_slots>=20, max_wal_senders>=20,
#       trust auth for user postgres over TCP, replication connections too.
#   MariaDB on :3306: log_bin (mysql-bin), binlog_format=ROW,
#       binlog_row_image=FULL, binlog_row_metadata=FULL, server_id=1,
#       root login over TCP with an empty password, database `test`.
#   NATS on :4222 with JetStream.
#   Redis on :6379.
#   kcat (librdkafka CLI) installed, for the Kafka interop tests; no service.
#
# The environment variables the tests read, and the defaults they assume
# (which are what this script sets up):
#   TAPLINE_TEST_PG_DSN      postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
#   TAPLINE_TEST_MYSQL_DSN   root@tcp(127.0.0.1:3306)/test
#   TAPLINE_TEST_NATS_URL    nats://127.0.0.1:4222
#   TAPLINE_TEST_REDIS_ADDR  127.0.0.1:6379
# The script always manages these local services; if you point the variables
# elsewhere, that server's setup is up to you.
#
# Knobs: TAPLINE_SERVICES_WAIT (seconds to wait for each service, default 60).

set -euo pipefail

# The daemons live in sbin, which a non-root PATH often lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

readonly WAIT_SECS=${TAPLINE_SERVICES_WAIT:-60}
readonly HOST=127.0.0.1

readonly PG_CLUSTER=main
readonly PG_MIN_SLOTS=20
readonly PG_MIN_SENDERS=20

# MariaDB settings, in the order they are written to the config file.
readonly MY_KEYS=(server_id log_bin binlog_format binlog_row_image binlog_row_metadata)
declare -A MY_WANT=(
	[server_id]=1
	[log_bin]=mysql-bin # basename; files go to the datadir
	[binlog_format]=ROW
	[binlog_row_image]=FULL
	[binlog_row_metadata]=FULL
)

readonly NATS_PORT=4222
readonly NATS_STORE=/var/lib/nats-server
readonly NATS_LOG=/var/log/nats-server.log

readonly REDIS_PORT=6379
readonly REDIS_DIR=/var/lib/redis
readonly REDIS_LOG=/var/log/redis/ci.log

# Markers around the blocks this script owns inside config files. Everything
# between them is rewritten on each run, so edit the script, not the block.
readonly BLOCK_BEGIN='# BEGIN tapline scripts/services.sh (managed block: edits here are overwritten)'
readonly BLOCK_END='# END tapline scripts/services.sh'

FIX=1 # 1: install/configure/start; 0: check only
PROBLEMS=()
SUMMARY=()

log() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die() {
	printf '[services] ERROR: %s\n' "$*" >&2
	exit 1
}

# fixable MSG: called when something is wrong. In fix mode it logs MSG and
# returns 0, so the caller goes on to fix it. In check mode it records MSG for
# the final report and returns 1, so the caller skips the rest of that service
# (`fixable "..." || return 0`).
fixable() {
	if ((FIX)); then
		log "$1"
		return 0
	fi
	PROBLEMS+=("$1")
	return 1
}

# wait_until SERVICE CHECK LOGFILE CMD...: run CMD until it succeeds, at most
# WAIT_SECS seconds, else fail naming the service, the check and the log.
wait_until() {
	local service=$1 check=$2 logfile=$3
	shift 3
	local deadline=$((SECONDS + WAIT_SECS))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "$service: no answer after ${WAIT_SECS}s to check '$check' ($*); see $logfile"
		fi
		sleep 0.5
	done
}

# write_block FILE top|end CONTENT: make FILE contain CONTENT between the
# markers, replacing an earlier copy wherever it was. "top" puts the block
# before the first line that is not a comment or blank (pg_hba.conf: the first
# matching rule wins), "end" appends it (option files: the last value wins).
# Returns 0 if FILE changed, 1 if it was already right. The first change of a
# non-empty file keeps a copy of the original as FILE.tapline.orig.
write_block() {
	local file=$1 where=$2 content=$3 tmp
	[[ -e $file ]] || : >"$file"
	tmp=$(mktemp)
	BLOCK="$BLOCK_BEGIN"$'\n'"$content"$'\n'"$BLOCK_END" WHERE=$where awk '
		$0 == ENVIRON["BLOCK_BEGIN"] { skip = 1; next }
		skip && $0 == ENVIRON["BLOCK_END"] { skip = 0; next }
		skip { next }
		{ lines[++n] = $0 }
		END {
			done = 0
			for (i = 1; i <= n; i++) {
				if (ENVIRON["WHERE"] == "top" && !done && lines[i] !~ /^[ \t]*(#|$)/) {
					print ENVIRON["BLOCK"]; done = 1
				}
				print lines[i]
			}
			if (!done) print ENVIRON["BLOCK"]
		}' "$file" >"$tmp"
	if cmp -s "$file" "$tmp"; then
		rm -f "$tmp"
		return 1
	fi
	[[ -e $file.tapline.orig || ! -s $file ]] || cp -p "$file" "$file.tapline.orig"
	cat "$tmp" >"$file" # keeps owner, mode and symlinks of the original
	rm -f "$tmp"
	log "updated $file"
}
export BLOCK_BEGIN BLOCK_END # read by the awk in write_block

# ---------------------------------------------------------------- packages --

# install_missing: apt-get install the packages whose commands are missing
# (apt-get update only when something is missing, so normal runs stay fast).
install_missing() {
	local missing=()
	if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
		missing+=(postgresql)
	fi
	command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
	command -v nats-server >/dev/null || missing+=(nats-server)
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v redis-cli >/dev/null || missing+=(redis-tools)
	command -v kcat >/dev/null || missing+=(kcat)
	((${#missing[@]})) || return 0

	log "installing ${missing[*]}"
	apt-get update -qq || warn "apt-get update failed; trying the install anyway"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
	# The postinst scripts may or may not have started the servers (no
	# systemd, policy-rc.d may forbid it); the setup_* functions start what is
	# still down.
}

# -------------------------------------------------------------- PostgreSQL --

PG_VER='' PG_PORT=5432 PG_STATUS='' PG_LOG=''

# psql as the postgres OS user over the unix socket: works with Debian's
# default peer auth, so root can fix pg_hba.conf before TCP logins work.
pg_sock() { (cd / && runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"); }
# psql the way the tests connect: TCP, user postgres, no password.
pg_tcp() { psql -X -q -At -w -v ON_ERROR_STOP=1 -d "host=$HOST port=$PG_PORT user=postgres dbname=postgres sslmode=disable connect_timeout=3" "$@"; }
# pg_repl database|true: a logical (matched by "all" in pg_hba.conf) or a
# physical (matched only by "replication") replication connection.
pg_repl() { psql -X -q -At -w -d "host=$HOST port=$PG_PORT user=postgres dbname=postgres sslmode=disable connect_timeout=3 replication=$1" -c IDENTIFY_SYSTEM; }
pg_ready() { pg_isready -q -h "$HOST" -p "$PG_PORT"; }
pg_ctl() { pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" "$1"; }

# pg_find_cluster: PG_VER/PG_PORT/PG_STATUS/PG_LOG of the newest "main" cluster.
pg_find_cluster() {
	local line
	# pg_lsclusters -h: version cluster port status owner datadir logfile
	line=$(pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2 == c' | sort -V | tail -n1) || true
	[[ -n $line ]] || return 1
	read -r PG_VER _ PG_PORT PG_STATUS _ _ PG_LOG <<<"$line"
}

# pg_read_settings PSQL-FUNCTION: the running values, into PG_* globals.
pg_read_settings() {
	local out
	out=$("$@" -c "select current_setting('wal_level'), current_setting('max_replication_slots'),
		current_setting('max_wal_senders'), current_setting('server_version')") || return 1
	IFS='|' read -r PG_WAL_LEVEL PG_SLOTS PG_SENDERS PG_SERVER_VERSION <<<"$out"
}

# pg_wrong: the ALTER SYSTEM assignments needed for the values just read.
pg_wrong() {
	PG_CHANGES=()
	[[ $PG_WAL_LEVEL == logical ]] || PG_CHANGES+=("wal_level = 'logical'")
	((PG_SLOTS >= PG_MIN_SLOTS)) || PG_CHANGES+=("max_replication_slots = $PG_MIN_SLOTS")
	((PG_SENDERS >= PG_MIN_SENDERS)) || PG_CHANGES+=("max_wal_senders = $PG_MIN_SENDERS")
}

setup_postgres() {
	local check_with=pg_tcp
	if ((FIX)); then
		if ! pg_find_cluster; then
			PG_VER=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
			[[ -n $PG_VER ]] || die "postgres: no server under /usr/lib/postgresql after install"
			log "postgres: creating cluster $PG_VER/$PG_CLUSTER"
			pg_createcluster "$PG_VER" "$PG_CLUSTER" >/dev/null
			pg_find_cluster || die "postgres: pg_createcluster $PG_VER $PG_CLUSTER made no cluster"
		fi
		[[ $PG_PORT == 5432 ]] || warn "postgres: cluster $PG_VER/$PG_CLUSTER listens on port $PG_PORT, not 5432; set TAPLINE_TEST_PG_DSN"
		if [[ $PG_STATUS != online* ]]; then
			log "postgres: starting cluster $PG_VER/$PG_CLUSTER"
			pg_ctl start
		fi
		wait_until "postgres $PG_VER" "pg_isready -h $HOST -p $PG_PORT" "$PG_LOG" pg_ready
		wait_until "postgres $PG_VER" "psql as postgres via socket" "$PG_LOG" pg_sock -c 'select 1'
		check_with=pg_sock
	else
		command -v psql >/dev/null || {
			PROBLEMS+=("postgres: psql not found (apt-get install postgresql-client)")
			return 0
		}
		pg_find_cluster || true # only for the port and log path, if local
		pg_ready || {
			PROBLEMS+=("postgres: not accepting connections on $HOST:$PG_PORT (pg_isready)")
			return 0
		}
	fi

	# Tests log in over TCP as postgres without a password, for normal and
	# for replication connections. Fix pg_hba.conf only if that fails.
	if ! pg_tcp -c 'select 1' >/dev/null 2>&1 || ! pg_repl database >/dev/null 2>&1 || ! pg_repl true >/dev/null 2>&1; then
		fixable "postgres: no passwordless TCP login (normal + logical + physical replication) as postgres on $HOST:$PG_PORT; needs trust lines in pg_hba.conf" || return 0
		local hba
		hba=$(pg_sock -c 'show hba_file')
		if write_block "$hba" top "host    all          all  127.0.0.1/32  trust
host    replication  all  127.0.0.1/32  trust"; then
			pg_sock -c 'select pg_reload_conf()' >/dev/null
		fi
		wait_until "postgres $PG_VER" "psql -h $HOST -U postgres (trust)" "$PG_LOG" pg_tcp -c 'select 1'
		wait_until "postgres $PG_VER" "logical replication login: IDENTIFY_SYSTEM" "$PG_LOG" pg_repl database
		wait_until "postgres $PG_VER" "physical replication login: IDENTIFY_SYSTEM" "$PG_LOG" pg_repl true
	fi

	pg_read_settings "$check_with" || {
		fixable "postgres: not answering on $HOST:$PG_PORT" || return 0
		die "postgres: cannot read settings"
	}
	pg_wrong
	if ((${#PG_CHANGES[@]})); then
		fixable "postgres: running with wal_level=$PG_WAL_LEVEL max_replication_slots=$PG_SLOTS max_wal_senders=$PG_SENDERS; needs ${PG_CHANGES[*]} (ALTER SYSTEM + restart)" || return 0
		local change args=()
		# One -c per statement: ALTER SYSTEM refuses to run in the implicit
		# transaction of a multi-statement string.
		for change in "${PG_CHANGES[@]}"; do args+=(-c "ALTER SYSTEM SET $change"); done
		pg_sock "${args[@]}"
		log "postgres: restarting cluster $PG_VER/$PG_CLUSTER (these settings need a restart)"
		pg_ctl restart
		wait_until "postgres $PG_VER" "pg_isready -h $HOST -p $PG_PORT" "$PG_LOG" pg_ready
		wait_until "postgres $PG_VER" "psql -h $HOST -U postgres" "$PG_LOG" pg_tcp -c 'select 1'
		pg_read_settings pg_tcp
		pg_wrong
		((${#PG_CHANGES[@]} == 0)) ||
			die "postgres: still wrong after restart (${PG_CHANGES[*]}); a command-line -c option may override ALTER SYSTEM, see $PG_LOG"
	else
		log "postgres: already configured"
	fi

	SUMMARY+=("postgres ${PG_SERVER_VERSION%% *}: $HOST:$PG_PORT wal_level=$PG_WAL_LEVEL max_replication_slots=$PG_SLOTS max_wal_senders=$PG_SENDERS (trust login + replication ok)")
}

# ----------------------------------------------------------------- MariaDB --

MY_SERVER='' MY_CLIENT='' MY_ADMIN='' MY_CNF='' MY_LOG='' MY_DATADIR='' MY_PORT=3306
declare -A MY_OPTS=()

# root over the unix socket (unix_socket auth on a fresh Debian install).
my_sock() { "$MY_CLIENT" -uroot -N -B "$@"; }
# The way the tests connect: TCP, root, no password, no option files.
my_tcp() { "$MY_CLIENT" --no-defaults --protocol=TCP -h "$HOST" -P "$MY_PORT" --connect-timeout=3 -uroot -N -B "$@"; }
# Exit status 0 while a server process started from MY_SERVER exists; the
# same match start-stop-daemon --start --oknodo uses.
my_running() { start-stop-daemon --status --exec "$MY_SERVER"; }
my_stopped() { ! my_running; }

# my_find: locate the binaries and the option file the server really reads.
my_find() {
	MY_SERVER=$(command -v mariadbd || command -v mysqld || true)
	[[ -z $MY_SERVER ]] || MY_SERVER=$(readlink -f "$MY_SERVER")
	MY_CLIENT=$(command -v mariadb || command -v mysql || true)
	MY_ADMIN=$(command -v mariadb-admin || command -v mysqladmin || true)
	[[ -n $MY_SERVER && -n $MY_CLIENT && -n $MY_ADMIN ]] || die "mariadb: server, client or admin binary not found"

	# The server lists the files it reads, in order, after this line of its
	# --help output. Later files override earlier ones, so our block goes into
	# the last system-wide file that exists (the per-user ~/.my.cnf is not for
	# the daemon). Follow symlinks (Debian: my.cnf -> alternatives).
	local files file
	files=$("$MY_SERVER" --help --verbose 2>/dev/null |
		awk 'found { print; exit } /Default options are read from the following files/ { found = 1 }') || true
	MY_CNF=''
	for file in $files; do
		[[ $file == "~"* ]] && continue
		[[ -e $file ]] && MY_CNF=$(readlink -f "$file")
	done
	[[ -n $MY_CNF ]] || MY_CNF=/etc/mysql/my.cnf # none exists yet: create the usual one
}

# my_read_defaults: the options the server would start with (last one wins),
# into MY_OPTS with names normalised to underscores.
my_read_defaults() {
	local tok name toks=()
	MY_OPTS=()
	read -r -a toks <<<"$("$MY_SERVER" --print-defaults 2>/dev/null | tail -n +2)"
	for tok in "${toks[@]}"; do
		[[ $tok == --* ]] || continue
		tok=${tok#--}
		name=${tok%%=*}
		name=${name//-/_}
		if [[ $tok == *=* ]]; then MY_OPTS[$name]=${tok#*=}; else MY_OPTS[$name]=''; fi
	done
	MY_DATADIR=${MY_OPTS[datadir]:-/var/lib/mysql}
	MY_PORT=${MY_OPTS[port]:-3306}
	MY_LOG=${MY_OPTS[log_error]:-/var/log/mysql/error.log}
	[[ $MY_LOG == /* ]] || MY_LOG=$MY_DATADIR/$MY_LOG
}

my_start() {
	install -d -o mysql -g mysql -m 0755 /run/mysqld # tmpfs: gone after a reboot
	if [[ ! -d $MY_DATADIR/mysql ]]; then
		log "mariadb: initialising $MY_DATADIR"
		"$(command -v mariadb-install-db || command -v mysql_install_db)" --user=mysql --datadir="$MY_DATADIR" >/dev/null
	fi
	# Started the same way as on the CI machines. Add --user / --log-error
	# only if the option files lack them: mariadbd refuses to run as root, and
	# with --background its stderr goes nowhere.
	local extra=()
	[[ -v MY_OPTS[user] ]] || extra+=(--user=mysql)
	if [[ ! -v MY_OPTS[log_error] ]]; then
		install -d -o mysql -g adm -m 2750 "${MY_LOG%/*}"
		extra+=(--log-error="$MY_LOG")
	fi
	log "mariadb: starting $MY_SERVER"
	start-stop-daemon --start --oknodo --background --exec "$MY_SERVER" ${extra[@]+-- "${extra[@]}"}
	wait_until mariadb "root login via socket: select 1" "$MY_LOG" my_sock -e 'select 1'
}

my_restart() {
	log "mariadb: restarting (log_bin needs a restart): $MY_ADMIN shutdown"
	"$MY_ADMIN" -uroot shutdown
	wait_until mariadb "server process exits after shutdown" "$MY_LOG" my_stopped
	my_start
}

# my_read_vars CLIENT-FUNCTION: running values, tab-separated in MY_KEYS order.
my_read_vars() {
	"$@" -e "select if(@@global.log_bin, @@global.log_bin_basename, 'OFF') as x, @@global.server_id,
		@@global.binlog_format, @@global.binlog_row_image, @@global.binlog_row_metadata" |
		awk -F'\t' '{ n = split($1, p, "/"); print $2 "\t" ($1 == "OFF" ? "OFF" : p[n]) "\t" $3 "\t" $4 "\t" $5 }'
}

# my_wrong VALUES: sets MY_BAD to the keys whose running value is wrong and
# MY_BAD_TEXT to a readable "key=have (want X)" list of them.
my_wrong() {
	local -a vals
	local i key
	IFS=$'\t' read -r -a vals <<<"$1"
	MY_BAD=() MY_BAD_TEXT=''
	for i in "${!MY_KEYS[@]}"; do
		key=${MY_KEYS[i]}
		[[ ${vals[i]:-} == "${MY_WANT[$key]}" ]] && continue
		MY_BAD+=("$key")
		MY_BAD_TEXT+="${MY_BAD_TEXT:+, }$key=${vals[i]:-?} (want ${MY_WANT[$key]})"
	done
}

# my_can_blank ACCOUNT: true if ACCOUNT does not exist or has no usable
# password (fresh Debian: root@localhost "... USING 'invalid' OR unix_socket"),
# so giving it an empty password takes nothing away.
my_can_blank() {
	local create
	create=$(my_sock -e "SHOW CREATE USER $1" 2>/dev/null) || return 0 # no such account
	create=${create//"USING 'invalid'"/}
	[[ $create != *USING* && $create != *PASSWORD* ]]
}

# my_fix_tcp_login: let root log in over TCP from 127.0.0.1 with an empty
# password (what the tests do), without ever overwriting a real password.
my_fix_tcp_login() {
	if [[ $(my_sock -e 'select @@skip_name_resolve') == 1 ]]; then
		# No name resolution: the client is matched against root@127.0.0.1.
		my_can_blank "'root'@'127.0.0.1'" ||
			die "mariadb: root@127.0.0.1 has a password, so tests cannot log in without one; remove it or set TAPLINE_TEST_MYSQL_DSN"
		log "mariadb: allowing root@127.0.0.1 with an empty password"
		my_sock -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
			ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
			GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
	else
		# MariaDB maps 127.0.0.1 to "localhost" and picks root@localhost. Keep
		# unix_socket first so the OS root still logs in via the socket.
		my_can_blank "'root'@'localhost'" ||
			die "mariadb: root@localhost has a password, so tests cannot log in without one; remove it or set TAPLINE_TEST_MYSQL_DSN"
		log "mariadb: allowing root@localhost with an empty password next to unix_socket"
		my_sock -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
	fi
}

setup_mariadb() {
	local key vals
	if ((!FIX)); then
		MY_CLIENT=$(command -v mariadb || command -v mysql || true)
		[[ -n $MY_CLIENT ]] || {
			PROBLEMS+=("mariadb: client not found (apt-get install mariadb-client)")
			return 0
		}
	else
		my_find
		# Settings go into the option file too, so that any restart (ours or
		# anyone's) keeps them; writing it alone restarts nothing.
		local block="[mysqld]"
		for key in "${MY_KEYS[@]}"; do block+=$'\n'"$key = ${MY_WANT[$key]}"; done
		write_block "$MY_CNF" end "$block" || true
		my_read_defaults
		for key in "${MY_KEYS[@]}"; do
			[[ ${MY_OPTS[$key]-} == "${MY_WANT[$key]}" ]] ||
				die "mariadb: $MY_CNF is not what mariadbd reads (--print-defaults has $key='${MY_OPTS[$key]-}', want ${MY_WANT[$key]})"
		done
		if ! my_sock -e 'select 1' >/dev/null 2>&1; then
			my_running && die "mariadb: $MY_SERVER runs but root cannot log in via the socket; see $MY_LOG"
			my_start
		fi
	fi

	# Check the running values; root reads them via the socket, which works
	# before the TCP login is fixed.
	if ((FIX)); then vals=$(my_read_vars my_sock); else vals=$(my_read_vars my_tcp 2>/dev/null) || vals=''; fi
	if [[ -z $vals ]]; then
		PROBLEMS+=("mariadb: no passwordless root login over TCP $HOST:$MY_PORT (server down, or root needs a password)")
		return 0
	fi
	my_wrong "$vals"
	if ((${#MY_BAD[@]})); then
		fixable "mariadb: running with $MY_BAD_TEXT" || return 0
		if [[ " ${MY_BAD[*]} " == *" log_bin "* ]]; then
			my_restart # log_bin cannot be switched on at run time
		else
			# The others are dynamic: no need to restart for them.
			for key in "${MY_BAD[@]}"; do
				local value=${MY_WANT[$key]}
				[[ $value =~ ^[0-9]+$ ]] || value="'$value'" # server_id wants a number
				log "mariadb: SET GLOBAL $key = $value"
				my_sock -e "SET GLOBAL $key = $value"
			done
		fi
		vals=$(my_read_vars my_sock)
		my_wrong "$vals"
		((${#MY_BAD[@]} == 0)) || die "mariadb: still wrong after the fix: $MY_BAD_TEXT; see $MY_LOG"
	else
		log "mariadb: already configured"
	fi

	if ! my_tcp -e 'select 1' >/dev/null 2>&1; then
		fixable "mariadb: root cannot log in over TCP $HOST:$MY_PORT with an empty password" || return 0
		my_fix_tcp_login
		wait_until mariadb "root login over TCP $HOST:$MY_PORT, empty password" "$MY_LOG" my_tcp -e 'select 1'
	fi

	if [[ -z $(my_tcp -e "select 1 from information_schema.schemata where schema_name = 'test'") ]]; then
		fixable "mariadb: database test missing" || return 0
		my_tcp -e 'CREATE DATABASE IF NOT EXISTS test'
	fi

	local version binlog
	version=$(my_tcp -e 'select version()')
	binlog=$(my_tcp -e 'show master status' | cut -f1)
	[[ -n $binlog ]] || die "mariadb: SHOW MASTER STATUS shows no binlog file"
	local -a v
	IFS=$'\t' read -r -a v <<<"$vals"
	SUMMARY+=("mariadb ${version%%-*}: $HOST:$MY_PORT log_bin=ON ($binlog) binlog_format=${v[2]} binlog_row_image=${v[3]} binlog_row_metadata=${v[4]} server_id=${v[0]}")
}

# -------------------------------------------------------------------- NATS --

# nats_info: the INFO line a NATS server sends first on every connection.
nats_info() {
	(
		exec 3<>"/dev/tcp/$HOST/$NATS_PORT" || exit 1
		IFS= read -r -t 3 line <&3 || exit 1
		printf '%s\n' "${line%$'\r'}"
	) 2>/dev/null
}
nats_js() { [[ $(nats_info) == 'INFO '*'"jetstream":true'* ]]; }

nats_start() {
	install -d -m 0750 "$NATS_STORE"
	log "nats: starting nats-server with JetStream"
	start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
		-a "$HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG"
	wait_until nats "INFO line on $HOST:$NATS_PORT has \"jetstream\":true" "$NATS_LOG" nats_js
}

setup_nats() {
	local info
	info=$(nats_info) || info=''
	if [[ -z $info ]]; then
		fixable "nats: nothing answers on $HOST:$NATS_PORT" || return 0
		nats_start
	elif [[ $info != *'"jetstream":true'* ]]; then
		fixable "nats: server on $HOST:$NATS_PORT runs without JetStream" || return 0
		log "nats: stopping it to restart with -js"
		start-stop-daemon --stop --oknodo --retry TERM/10/KILL/5 --exec "$(command -v nats-server)"
		nats_start
	else
		log "nats: already configured"
	fi
	info=$(nats_info)
	local version=${info#*\"version\":\"}
	SUMMARY+=("nats ${version%%\"*}: $HOST:$NATS_PORT jetstream=true")
}

# ------------------------------------------------------------------- Redis --

redis_ping() { [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

setup_redis() {
	command -v redis-cli >/dev/null || {
		PROBLEMS+=("redis: redis-cli not found (apt-get install redis-tools)")
		return 0
	}
	if redis_ping; then
		log "redis: already running"
	else
		fixable "redis: no PONG from $HOST:$REDIS_PORT" || return 0
		install -d "$REDIS_DIR" "${REDIS_LOG%/*}"
		log "redis: starting redis-server"
		redis-server --daemonize yes --bind "$HOST" -::1 --port "$REDIS_PORT" --save "" \
			--appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_LOG"
		wait_until redis "redis-cli -h $HOST -p $REDIS_PORT ping" "$REDIS_LOG" redis_ping
	fi
	local version
	version=$(redis-cli -h "$HOST" -p "$REDIS_PORT" info server | awk -F: '/^redis_version:/ { sub(/\r$/, "", $2); print $2 }')
	SUMMARY+=("redis $version: $HOST:$REDIS_PORT PONG")
}

# -------------------------------------------------------------------- kcat --

check_kcat() {
	if ! command -v kcat >/dev/null; then
		# Only the Kafka interop tests need it; not worth failing a check run.
		warn "kcat not installed (root: apt-get install kcat)"
		return 0
	fi
	local version
	version=$(kcat -V 2>&1 | awk '/Version/ { print $2; exit }') || true
	SUMMARY+=("kcat ${version:-?}: $(command -v kcat)")
}

# -------------------------------------------------------------------- main --

main() {
	case ${1:-} in
	--check) FIX=0 ;;
	'') ;;
	*) die "usage: $0 [--check]" ;;
	esac
	((EUID == 0)) || FIX=0

	if ((FIX)); then
		command -v apt-get >/dev/null || die "this script sets services up on Debian (apt-get); run with --check elsewhere"
		install_missing
	fi
	setup_postgres
	setup_mariadb
	setup_nats
	setup_redis
	check_kcat

	if ((${#PROBLEMS[@]})); then
		printf '[services] not ready:\n' >&2
		printf '  - %s\n' "${PROBLEMS[@]}" >&2
		printf '[services] %s\n' "these need root: run 'sudo make services' (or 'sudo bash scripts/services.sh') on Debian." >&2
		exit 1
	fi

	printf '%s\n' "${SUMMARY[@]}"
	cat <<-EOF
		test environment (defaults; export to override):
		  TAPLINE_TEST_PG_DSN=postgres://postgres@$HOST:$PG_PORT/postgres?sslmode=disable
		  TAPLINE_TEST_MYSQL_DSN=root@tcp($HOST:$MY_PORT)/test
		  TAPLINE_TEST_NATS_URL=nats://$HOST:$NATS_PORT
		  TAPLINE_TEST_REDIS_ADDR=$HOST:$REDIS_PORT
		services ready in ${SECONDS}s
	EOF
}

main "$@"
