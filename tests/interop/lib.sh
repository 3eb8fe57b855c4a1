# shellcheck shell=bash disable=SC2034  # RE_* and others are used by the scripts sourcing this
# Shared helpers for the tls13 interop tests (sourced, not run).
#
# Each test script: source this file, build the certificates it needs with
# pki_* into its private temp dir ($T), start real servers (openssl s_server,
# gnutls-serv) on 127.0.0.1, run the probe with run_probe, and check the
# probe's key=value output with the assert_* helpers.  Every failure is
# counted and printed; `finish` at the end sets the exit status.  The EXIT
# trap stops the servers this script started (by PID only) and removes $T.
#
# Environment: TLSGATE_PROBE (default ./tlsgate-probe), OPENSSL (default
# openssl), GNUTLS_SERV (default gnutls-serv), PYTHON (/usr/bin/python3 if
# present, for the raw test servers), PROBE_TIMEOUT (seconds, 20),
# TLSGATE_KEEP=1 keeps $T for inspection.

set -u

# gnutls-serv cannot be told to bind 127.0.0.1 only.  Scripts that start it
# set PRIVATE_NET=1 before sourcing this file and then run in a network
# namespace of their own whose only interface is loopback.
if [ "${PRIVATE_NET:-}" = 1 ] && [ -z "${TLSGATE_IN_NETNS:-}" ]; then
	exec unshare --net -- env TLSGATE_IN_NETNS=1 bash -c \
		'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

PROBE=${TLSGATE_PROBE:-./tlsgate-probe}
OPENSSL=${OPENSSL:-openssl}
GNUTLS_SERV=${GNUTLS_SERV:-gnutls-serv}
# The system python starts faster than a version-manager shim.
if [ -z "${PYTHON:-}" ]; then
	if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
PROBE_TIMEOUT=${PROBE_TIMEOUT:-20}
HOST=127.0.0.1
SNI=tlsgate.test            # the name every server certificate carries

TEST_NAME=$(basename "$0")
FAILS=0
CHECKS=0
SERVER_PIDS=()

T=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-interop.XXXXXX") || exit 2

_cleanup()
{
	local pid i
	for pid in "${SERVER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${SERVER_PIDS[@]}"; do
		for i in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "${TLSGATE_KEEP:-0}" = 1 ]; then
		echo "kept $T"
	else
		rm -rf "$T"
	fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Reporting

say()  { printf '%s\n' "$*"; }
pass() { CHECKS=$((CHECKS + 1)); say "ok   - $*"; }
FAILED=()
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); FAILED+=("$*"); say "FAIL - $*"; }
die()  { say "FATAL - $*"; exit 2; }

finish()
{
	local f
	if [ "$FAILS" -gt 0 ]; then
		# Repeated last, as the runner shows only the tail of the log.
		say "--- failed checks:"
		for f in "${FAILED[@]}"; do say "FAIL - $f"; done
		say "$TEST_NAME: $FAILS of $CHECKS checks failed"
		exit 1
	fi
	say "$TEST_NAME: all $CHECKS checks passed"
	exit 0
}

need()
{
	command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"
}

need_probe()
{
	[ -x "$PROBE" ] || command -v "$PROBE" >/dev/null 2>&1 ||
		die "probe '$PROBE' not found or not executable (make tlsgate-probe)"
}

need "$OPENSSL" "apt install openssl"
need timeout
need stdbuf

# ---------------------------------------------------------------------------
# Certificates.  All files land in $T/pki; names are NAME.key / NAME.pem.
# Key types: rsa2048, p256, p384, ed25519.  Server leaves carry
# SAN DNS:$SNI, DNS:localhost, IP:127.0.0.1.

PKI=$T/pki

_pki_conf()
{
	[ -f "$PKI/openssl.cnf" ] && return
	mkdir -p "$PKI/ca/newcerts"
	: >"$PKI/ca/index.txt"
	cat >"$PKI/openssl.cnf" <<EOF
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = $PKI/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ server_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$SNI,DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ other_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

# pki_key NAME TYPE
pki_key()
{
	local out=$PKI/$1.key
	_pki_conf
	case $2 in
	rsa2048) "$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out" ;;
	p256) "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-pkeyopt ec_param_enc:named_curve -out "$out" ;;
	p384) "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 \
		-pkeyopt ec_param_enc:named_curve -out "$out" ;;
	ed25519) "$OPENSSL" genpkey -algorithm ED25519 -out "$out" ;;
	*) die "pki_key: unknown key type $2" ;;
	esac 2>"$PKI/err" || { cat "$PKI/err"; die "key generation failed: $1 $2"; }
}

# pki_root NAME TYPE   -- self-signed root CA
pki_root()
{
	pki_key "$1" "$2"
	"$OPENSSL" req -x509 -new -config "$PKI/openssl.cnf" -extensions ca_ext \
		-key "$PKI/$1.key" -subj "/CN=tlsgate interop $1" -days 30 \
		-out "$PKI/$1.pem" 2>"$PKI/err" ||
		{ cat "$PKI/err"; die "root generation failed: $1"; }
}

# pki_cert NAME TYPE ISSUER PROFILE [STARTDATE ENDDATE]
#   PROFILE: ca_ext (intermediate), server_ext, client_ext, other_ext (a
#   server certificate for other.example only).
#   With STARTDATE/ENDDATE (YYYYMMDDHHMMSSZ) the certificate is issued with
#   `openssl ca`, since OpenSSL 3.0's x509 cannot set dates in the past.
pki_cert()
{
	local name=$1 type=$2 issuer=$3 profile=$4
	pki_key "$name" "$type"
	"$OPENSSL" req -new -config "$PKI/openssl.cnf" -key "$PKI/$name.key" \
		-subj "/CN=tlsgate interop $name" -out "$PKI/$name.csr" 2>"$PKI/err" ||
		{ cat "$PKI/err"; die "csr failed: $name"; }
	if [ $# -ge 6 ]; then
		"$OPENSSL" ca -batch -notext -config "$PKI/openssl.cnf" -create_serial \
			-cert "$PKI/$issuer.pem" -keyfile "$PKI/$issuer.key" \
			-extfile "$PKI/openssl.cnf" -extensions "$profile" \
			-startdate "$5" -enddate "$6" \
			-in "$PKI/$name.csr" -out "$PKI/$name.pem" >"$PKI/err" 2>&1 ||
			{ cat "$PKI/err"; die "ca signing failed: $name"; }
	else
		"$OPENSSL" x509 -req -in "$PKI/$name.csr" -CA "$PKI/$issuer.pem" \
			-CAkey "$PKI/$issuer.key" -CAcreateserial -CAserial "$PKI/serial" \
			-days 30 -extfile "$PKI/openssl.cnf" -extensions "$profile" \
			-out "$PKI/$name.pem" >"$PKI/err" 2>&1 ||
			{ cat "$PKI/err"; die "signing failed: $name"; }
	fi
}

# pki_std [LEAFTYPE [CATYPE]]: the usual set-up -- root -> intermediate ->
# server leaf.  Keys: leaf LEAFTYPE (default p256), root and intermediate
# CATYPE (default p256: RSA key generation is slow; 10-cert-types has the
# all-RSA chain).  The chain file holds the leaf's issuers without the root.
#   $PKI/root.pem  trust anchor       $PKI/int.pem   intermediate
#   $PKI/srv.pem   leaf  srv.key      $PKI/chain.pem intermediate (for -cert_chain)
pki_std()
{
	pki_root root "${2:-p256}"
	pki_cert int "${2:-p256}" root ca_ext
	pki_cert srv "${1:-p256}" int server_ext
	cp "$PKI/int.pem" "$PKI/chain.pem"
}

# ---------------------------------------------------------------------------
# Ports and servers

_listening()
{
	# Is anything in LISTEN state (0A) on local port $1 (IPv4 or IPv6)?
	local hex
	hex=$(printf ':%04X ' "$1")
	grep -q "${hex}[0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

_port_used()
{
	local hex
	hex=$(printf ':%04X ' "$1")
	grep -q "^ *[0-9]*: [0-9A-F]*$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port: print a local port that nothing is using right now.
free_port()
{
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		_port_used "$p" || { echo "$p"; return 0; }
	done
	die "no free port found"
}

# start_server NAME PORT CMD...   Start CMD in the background with stdout and
# stderr in $T/NAME.log (stdin from $T/NAME.in if that exists, else
# /dev/null), and wait (up to 5 s) until PORT listens.  Sets SERVER_PID.
start_server()
{
	local name=$1 port=$2 i in=/dev/null
	shift 2
	[ -e "$T/$name.in" ] && in=$T/$name.in
	"$@" <"$in" >"$T/$name.log" 2>&1 &
	SERVER_PID=$!
	SERVER_PIDS+=("$SERVER_PID")
	for _ in $(seq 1 100); do
		if _listening "$port"; then
			return 0
		fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			say "server $name exited before listening; its log:"
			sed 's/^/    | /' "$T/$name.log"
			die "could not start $name: $*"
		fi
		sleep 0.05
	done
	sed 's/^/    | /' "$T/$name.log"
	die "$name did not listen on port $port within 5 s"
}

# stop_server PID: stop one server this script started.
stop_server()
{
	local pid=$1
	kill "$pid" 2>/dev/null
	for _ in $(seq 1 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# s_server NAME [ARGS...]: openssl s_server, TLS 1.3 only, on a fresh port
# (PORT), with the pki_std certificate and chain unless ARGS give -cert.
s_server()
{
	local name=$1
	shift
	PORT=$(free_port)
	local certargs=(-cert "$PKI/srv.pem" -key "$PKI/srv.key" -cert_chain "$PKI/chain.pem")
	case " $* " in *" -cert "*) certargs=() ;; esac
	# stdbuf: s_server's log goes through stdio; line-buffer it so the
	# log can be checked while the server runs.
	start_server "$name" "$PORT" stdbuf -oL -eL "$OPENSSL" s_server -accept "$HOST:$PORT" \
		"${certargs[@]}" "$@"
}

# gnutls_serv NAME [ARGS...]: gnutls-serv on a fresh port (PORT) with the
# pki_std certificate (leaf + intermediate in one file).  gnutls-serv has no
# option to choose the listen address: it binds all local addresses.
gnutls_serv()
{
	local name=$1
	shift
	PORT=$(free_port)
	[ -f "$PKI/srv-full.pem" ] || cat "$PKI/srv.pem" "$PKI/chain.pem" >"$PKI/srv-full.pem"
	local certargs=(--x509certfile "$PKI/srv-full.pem" --x509keyfile "$PKI/srv.key")
	case " $* " in *" --x509certfile"*) certargs=() ;; esac
	start_server "$name" "$PORT" stdbuf -oL -eL "$GNUTLS_SERV" -p "$PORT" "${certargs[@]}" "$@"
}

# interactive NAME STEP...: openssl s_server in interactive mode (no -www)
# with the arguments in the array SRV_ARGS, its stdin fed from a FIFO, and
# the probe (arguments in the array PROBE_ARGS) in the background.  Once the
# server has logged the probe's GET, each STEP is written to the server's
# stdin 0.2 s apart: "k"/"K" (s_server's KeyUpdate commands, without/with
# update_requested) or "data:TEXT" (sent as application data; printf %b
# escapes).  Then waits for the probe and stops the server.  Sets PROBE_RC;
# the probe's output is in $T/probe.out and $T/probe.err as for run_probe;
# the server's log in $T/NAME.log.
SRV_ARGS=()
PROBE_ARGS=()
interactive()
{
	local name=$1 step ppid
	shift
	mkfifo "$T/$name.in"
	exec 7<>"$T/$name.in"
	s_server "$name" "${SRV_ARGS[@]}"
	( run_probe "${PROBE_ARGS[@]}"; echo "$PROBE_RC" >"$T/$name.rc" ) >"$T/$name.probe" 2>&1 &
	ppid=$!
	for _ in $(seq 1 100); do
		grep -q '^GET / HTTP/1.1' "$T/$name.log" && break
		kill -0 "$ppid" 2>/dev/null || break
		sleep 0.05
	done
	if grep -q '^GET / HTTP/1.1' "$T/$name.log"; then
		for step in "$@"; do
			case $step in
			k | K) printf '%s\n' "$step" >&7 ;;
			data:*) printf '%b' "${step#data:}" >&7 ;;
			esac
			sleep 0.2
		done
		# A probe that reads until the connection closes needs the server
		# to close: "q" closes the socket (s_server sends no close_notify).
		for _ in $(seq 1 40); do
			kill -0 "$ppid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$ppid" 2>/dev/null; then
			say "  (probe still running after the response: closing)"
			printf 'q\n' >&7
		fi
	else
		say "  (the server never saw the GET request)"
	fi
	wait "$ppid"
	cat "$T/$name.probe"
	PROBE_RC=$(cat "$T/$name.rc" 2>/dev/null || echo 255)
	exec 7>&-
	stop_server "$SERVER_PID"
}

# ---------------------------------------------------------------------------
# The probe

# run_probe ARGS...: run the probe against $HOST:$PORT with --ca root and
# --sni $SNI unless ARGS give them.  Sets PROBE_RC, $T/probe.out,
# $T/probe.err, and echoes both (indented) for the log.
PROBE_RUNS=0
run_probe()
{
	local pre=() target="$HOST:$PORT"
	case " $* " in *" --ca "*) ;; *) pre+=(--ca "$PKI/root.pem") ;; esac
	case " $* " in *" --sni "*) ;; *) pre+=(--sni "$SNI") ;; esac
	PROBE_RUNS=$((PROBE_RUNS + 1))
	say "  \$ tlsgate-probe ${pre[*]} $* $target"
	timeout -k 2 "$PROBE_TIMEOUT" "$PROBE" "${pre[@]}" "$@" "$target" \
		>"$T/probe.out" 2>"$T/probe.err"
	PROBE_RC=$?
	sed 's/^/    > /' "$T/probe.out"
	sed 's/^/    ! /' "$T/probe.err"
	say "    exit $PROBE_RC"
	cp "$T/probe.out" "$T/probe.$PROBE_RUNS.out"
	cp "$T/probe.err" "$T/probe.$PROBE_RUNS.err"
}

# kv KEY: the value of the first KEY=value line the probe printed.
kv()
{
	local line v
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in "$1="*)
			v=${line#"$1="}
			v=${v%$'\r'}
			v=${v#"${v%%[![:space:]]*}"}
			v=${v%"${v##*[![:space:]]}"}
			printf '%s\n' "$v"
			return 0 ;;
		esac
	done <"$T/probe.out"
}

# Canonical forms, so that assertions accept either IANA or short names.
canon()
{
	local v
	v=${1,,}
	v=${v//[^a-z0-9]/}
	case $v in
	tlsv13 | tls13 | 0x0304 | 772) v=tls13 ;;
	tlsv12 | tls12 | 0x0303 | 771) v=tls12 ;;
	p256 | prime256v1 | secp256r1 | nistp256 | 0x0017 | 23) v=secp256r1 ;;
	x25519 | 0x001d | 29) v=x25519 ;;
	tlsaes128gcmsha256 | aes128gcmsha256 | 0x1301 | 4865) v=aes128gcm ;;
	tlsaes256gcmsha384 | aes256gcmsha384 | 0x1302 | 4866) v=aes256gcm ;;
	tlschacha20poly1305sha256 | chacha20poly1305sha256 | 0x1303 | 4867) v=chacha20 ;;
	yes | true | 1 | y) v=yes ;;
	no | false | 0 | n) v=no ;;
	esac
	printf '%s' "$v"
}

_probe_crashed()
{
	# timeout(1) gives 124 on a time-out and 128+N when the probe died of
	# signal N; 137 = SIGKILL after -k.
	[ "$PROBE_RC" -eq 124 ] || [ "$PROBE_RC" -ge 126 ] ||
		grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/probe.err"
}

_describe_rc()
{
	case $PROBE_RC in
	124) echo "timed out after ${PROBE_TIMEOUT}s" ;;
	137) echo "killed (did not stop after timeout)" ;;
	*) if [ "$PROBE_RC" -gt 128 ]; then echo "died of signal $((PROBE_RC - 128))"
	   else echo "exit $PROBE_RC"; fi ;;
	esac
}

# assert_ok WHAT: the probe succeeded and printed a 2xx/3xx status line.
assert_ok()
{
	if [ "$PROBE_RC" -ne 0 ]; then
		fail "$1: probe failed ($(_describe_rc)): $(head -c 300 "$T/probe.err" | tr '\n' ' ')"
		return 1
	fi
	if ! grep -qE '^HTTP/1\.[01] [23][0-9][0-9]' "$T/probe.out"; then
		fail "$1: no HTTP status line in the probe's output"
		return 1
	fi
	if grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/probe.err"; then
		fail "$1: sanitizer report on stderr"
		return 1
	fi
	pass "$1: handshake and GET ok ($(grep -m1 -E '^HTTP/' "$T/probe.out" | tr -d '\r'))"
}

# assert_kv WHAT KEY EXPECTED: canon(value of KEY) == canon(EXPECTED).
assert_kv()
{
	local v
	v=$(kv "$2")
	if [ -z "$v" ] && ! grep -q "^$2=" "$T/probe.out"; then
		fail "$1: the probe printed no '$2=' line"
		return 1
	fi
	if [ "$(canon "$v")" = "$(canon "$3")" ]; then
		pass "$1: $2=$v"
	else
		fail "$1: expected $2=$3, got $2=$v"
		return 1
	fi
}

# kv_num KEY: the value of KEY if it is a non-negative integer, else "".
kv_num()
{
	local v
	v=$(kv "$1")
	case $v in '' | *[!0-9]*) echo "" ;; *) echo "$v" ;; esac
}

# assert_num WHAT KEY TEST: KEY is an integer and satisfies TEST, an
# arithmetic expression in which "v" stands for the value (e.g. 'v == 512').
assert_num()
{
	local v
	v=$(kv_num "$2")
	if [ -z "$v" ]; then
		fail "$1: '$2' is missing or not a number ($2=$(kv "$2"))"
		return 1
	fi
	if (( ${3//v/$v} )); then
		pass "$1: $2=$v ($3)"
	else
		fail "$1: $2=$v does not satisfy $3"
		return 1
	fi
}

# assert_fails WHAT REGEX: the probe failed cleanly (non-zero exit, not a
# signal, not a time-out) and stderr matches REGEX (extended, case-insensitive).
assert_fails()
{
	if [ "$PROBE_RC" -eq 0 ]; then
		fail "$1: the probe succeeded but must fail"
		return 1
	fi
	if _probe_crashed; then
		fail "$1: the probe did not fail cleanly ($(_describe_rc))"
		return 1
	fi
	if ! grep -qiE "$2" "$T/probe.err"; then
		fail "$1: stderr does not give the reason /$2/: $(head -c 300 "$T/probe.err" | tr '\n' ' ')"
		return 1
	fi
	pass "$1: failed cleanly (exit $PROBE_RC): $(grep -m1 -iE "$2" "$T/probe.err" | head -c 160)"
}

# assert_log WHAT FILE REGEX: a server log shows REGEX.
assert_log()
{
	if grep -qE "$3" "$2"; then
		pass "$1"
	else
		fail "$1: /$3/ not in $(basename "$2"); its tail:"
		tail -n 15 "$2" | sed 's/^/    | /'
		return 1
	fi
}

# Regexes for the failure reasons (the probe prints the alert name or the
# certificate verification error; accept OpenSSL's wording of each too).
RE_UNKNOWN_CA='unknown.?ca|unable to get (local )?issuer|issuer certificate|untrusted|self.signed certificate in'
RE_NAME='host.?name|name mismatch|mismatch|does not match'
RE_EXPIRED='expired'
RE_NOT_YET='not yet valid|not_yet_valid|future'
RE_PROTOCOL_VERSION='protocol.?version'
RE_HANDSHAKE_FAILURE='handshake.?failure'
RE_CERT_REQUIRED='certificate.?required'
