#!/usr/bin/env python3
"""Seeds a migrated trustplane SQLite database for benches/evidence.sh: N audit events with a
valid version-2 hash chain (the same canonical form as src/audit/mod.rs) and M image rows.

usage: evidence_seed.py DB EVENTS IMAGES START_MS
"""
import hashlib
import json
import sqlite3
import sys

db, events, images, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conn = sqlite3.connect(db)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=OFF")
seq, prev = conn.execute("SELECT seq, head_hash FROM audit_head WHERE id = 1").fetchone()
actors = [f"staff:user{i}@example.com" for i in range(50)]
actions = ["auth.login", "keys.create", "staff.role.grant", "incident.triage", "vendor.update"]
step = max(1, (90 * 86_400_000) // max(events, 1))  # spread over about 90 days


def rows():
    global seq, prev
    for i in range(events):
        seq += 1
        at = start + i * step
        actor = actors[i % len(actors)]
        action = actions[i % len(actions)]
        target = f"thing:{i}"
        net = f"203.0.{i % 250}.0/24"
        commitment = hashlib.sha256(f"salt{i}|203.0.{i % 250}.{i % 200}".encode()).hexdigest()
        request_id = f"req-{i}"
        details = json.dumps({"n": i}, separators=(",", ":"))
        canonical = json.dumps(
            [2, seq, at, actor, action, target, "success", net, commitment, request_id, details],
            separators=(",", ":"),
            ensure_ascii=False,
        )
        digest = hashlib.sha256((prev + canonical).encode()).hexdigest()
        yield (seq, at, actor, action, target, "success", None, net, None, commitment,
               request_id, details, 2, prev, digest)
        prev = digest


conn.executemany(
    "INSERT INTO audit_log (seq, at, actor, action, target, outcome, client_ip, client_net, "
    "ip_salt, ip_commitment, request_id, details, chain_version, prev_hash, hash) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    rows(),
)
conn.execute("UPDATE audit_head SET seq = ?, head_hash = ? WHERE id = 1", (seq, prev))
conn.executemany(
    "INSERT OR IGNORE INTO audit_actors (actor) VALUES (?)", [(a,) for a in actors]
)
img_step = max(1, (90 * 86_400_000) // max(images, 1))
conn.executemany(
    "INSERT INTO images (id, customer_id, key_id, kind, format, width, height, byte_size, "
    "blob_key, result, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    (
        (f"img-{i:08d}", None, None, "production" if i % 5 else "demo", "jpeg", 640, 480,
         50_000 + i % 1000, f"blobs/img-{i:08d}", '{"faces":1}', start + i * img_step,
         start + i * img_step + 30 * 86_400_000)
        for i in range(images)
    ),
)
conn.commit()
print(f"seeded {events} audit events (head #{seq}) and {images} images")
