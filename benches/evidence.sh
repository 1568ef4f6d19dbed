#!/usr/bin/env bash
# Evidence-pack benchmark: export a period holding EVENTS audit events and IMAGES images
# (time and peak RSS), against `sqlite3 -csv` of the same rows piped through `zip` in the same
# run; then `evidence verify` of that pack against `sha256sum` of its extracted files.
#
# usage: benches/evidence.sh [BIN]   (default target/release/trustplane)
#        EVENTS=1000000 IMAGES=100000 KEEP=1 benches/evidence.sh
set -euo pipefail
BIN=${1:-target/release/trustplane}
BIN=$(realpath "$BIN")
EVENTS=${EVENTS:-1000000}
IMAGES=${IMAGES:-100000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/evidence-bench.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
for v in $(env | grep -o '^TRUSTPLANE_[A-Z_]*'); do unset "$v"; done
export TRUSTPLANE_DATA_DIR="$WORK/data" TRUSTPLANE_LOG=warn
DB="$WORK/data/trustplane.db"
START_MS=1798761600000   # 2027-01-01T00:00:00Z
FROM=2027-01-01 TO=2027-04-01

measure() { # label, command… ; prints "label seconds peak_rss_mb"
  local label=$1; shift
  /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || {
    cat "$WORK/err.txt" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt" |
    awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$WORK/time.txt")
  printf '%-46s %8.2f s %7s MB\n' "$label" "$wall" "$rss" | tee -a "$WORK/results.txt"
}

echo "== seeding $EVENTS audit events and $IMAGES images into $DB"
"$BIN" migrate >/dev/null
python3 "$HERE/evidence_seed.py" "$DB" "$EVENTS" "$IMAGES" "$START_MS"
"$BIN" audit verify >/dev/null
"$BIN" evidence public-key >"$WORK/keys.txt"

echo "== export ($FROM to $TO)"
: >"$WORK/results.txt"
measure "trustplane evidence export" "$BIN" evidence export --from "$FROM" --to "$TO" --out "$WORK/pack.zip"
AUDIT_SQL="SELECT seq, at, actor, action, target, outcome, client_net, ip_commitment, request_id, details, chain_version, prev_hash, hash FROM audit_log WHERE at >= $START_MS AND at < 1806537600000 ORDER BY seq"
IMAGES_SQL="SELECT id, customer_id, kind, format, width, height, byte_size, created_at, expires_at FROM images WHERE created_at >= $START_MS AND created_at < 1806537600000 ORDER BY created_at, id"
measure "baseline: sqlite3 -csv | zip (audit + images)" sh -c "
  rm -f '$WORK/base.zip'
  sqlite3 -csv -header '$DB' \"$AUDIT_SQL\" | zip -q '$WORK/base.zip' - &&
  printf '@ -\n@=audit_log.csv\n' | zipnote -w '$WORK/base.zip' &&
  sqlite3 -csv -header '$DB' \"$IMAGES_SQL\" | zip -q '$WORK/base.zip' -"
ls -l "$WORK/pack.zip" "$WORK/base.zip" | awk '{printf "%-40s %12d bytes\n", $9, $5}' | tee -a "$WORK/results.txt"

echo "== verify"
measure "trustplane evidence verify" "$BIN" evidence verify "$WORK/pack.zip" --public-key "$WORK/keys.txt"
cat "$WORK/out.txt"
measure "baseline: unzip + sha256sum of every file" sh -c "
  rm -rf '$WORK/x' && unzip -q '$WORK/pack.zip' -d '$WORK/x' && find '$WORK/x' -type f -exec sha256sum {} + >/dev/null"

echo "== summary (wall time, peak RSS)"
cat "$WORK/results.txt"
