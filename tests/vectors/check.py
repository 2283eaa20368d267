#!/usr/bin/env python3
"""Independent check of the BIZRA Node0 test vectors (docs/protocol.md §9), written
independently of the Rust code.

    python check.py               # check every vector file next to this script
    python check.py --self-test   # also show that a changed byte makes the check fail
    python check.py --dir DIR     # check the files in DIR

Recomputes, in Python:
  * attestations.json: the canonical bytes (rfc8785 of the attestation with
    signature.sig_base16 = ""), the BLAKE3 digest, the signing message, the signature
    verdict, and the validation outcome (docs/protocol.md §2.3 rules 1-13, a strict schema
    check for raw bodies);
  * merkle.json: every root and every inclusion proof (RFC 9162 with BLAKE3), and verifies
    each proof with the algorithm of RFC 9162 §2.1.3.2;
  * blocks.json (header version 2): the genesis file digest, the validators' weights, the
    genesis block, every block hash (rfc8785 of the header), proposer id, epoch, both
    Merkle roots and counts (entries_root over BLAKE3 of the rfc8785 bytes of each
    registry entry), the entries' own signatures, the parent rule (genesis alone under
    height 1; parents of height h-1 by distinct proposers with 2/3 of the weight), the
    proposer signature over b"bizra/block/v2" and every vote over b"bizra/vote/v2";
  * weights.json: the effective-weight formula and impact sums, to the bit;
  * signatures.json: the ZIP-215 verdict of every adversarial case.

Signatures are checked twice. PyNaCl (libsodium) is the reference for ordinary signatures,
but libsodium is stricter than ZIP-215: it rejects small-order and mixed-order points and
non-canonical encodings that ZIP-215 accepts, so it is only consulted on inputs where the
two rule sets must agree (every point canonical and of prime order). Every verdict,
including the adversarial ones, is also recomputed with the small pure-Python ZIP-215
verifier below (cofactored equation, non-canonical encodings accepted, S < l).

Prints `vectors: N passed, M failed` and exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import math
import re
import sys
from pathlib import Path

import blake3
import nacl.exceptions
import nacl.signing
import rfc8785

HERE = Path(__file__).resolve().parent


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def jcs(obj) -> bytes:
    return rfc8785.dumps(obj)


class Mismatch(Exception):
    pass


def same(what: str, got, want):
    if got != want:
        raise Mismatch(f"{what}: computed {got!r}, vector says {want!r}")


# -----------------------------------------------------------------------------------------
# Ed25519 with the ZIP-215 rules, in pure Python (slow, exact)
# -----------------------------------------------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
D2 = (2 * D) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def _x_from_y(y: int, sign: int):
    """x with x^2 = (y^2 - 1) / (d y^2 + 1) and the given parity, or None."""
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = (P - x) % P  # x = 0 with the sign bit set stays 0: ZIP-215 accepts it
    return x


@functools.lru_cache(maxsize=None)
def decode_point(enc: bytes):
    """ZIP-215 decoding: y may be >= p (taken mod p); None when not on the curve."""
    n = int.from_bytes(enc, "little")
    sign, y = n >> 255, (n & ((1 << 255) - 1)) % P
    x = _x_from_y(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def encode_point(pt) -> bytes:
    x, y, z, _ = pt
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_add(p, q):
    # Extended twisted Edwards coordinates, a = -1; complete, so also used for doubling.
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * D2 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_neg(p):
    x, y, z, t = p
    return ((-x) % P, y, z, (-t) % P)


def scalar_mult(k: int, p):
    q = IDENTITY
    for bit in bin(k)[2:] if k else "":
        q = point_add(q, q)
        if bit == "1":
            q = point_add(q, p)
    return q


def is_identity(p) -> bool:
    x, y, z, _ = p
    return x % P == 0 and (y - z) % P == 0


BASE = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


@functools.lru_cache(maxsize=None)
def prime_order_canonical(enc: bytes) -> bool:
    """True for the canonical encoding of a point of order l (no torsion component)."""
    pt = decode_point(enc)
    if pt is None or encode_point(pt) != enc or is_identity(pt):
        return False
    return is_identity(scalar_mult(L, pt))


@functools.lru_cache(maxsize=None)
def zip215_verdict(pk: bytes, sig: bytes, msg: bytes) -> str:
    a = decode_point(pk)
    if a is None:
        return "pubkey_not_on_curve"
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return "bad_signature"
    r = decode_point(sig[:32])
    if r is None:
        return "bad_signature"
    k = int.from_bytes(hashlib.sha512(sig[:32] + pk + msg).digest(), "little") % L
    # [8]([s]B - R - [k]A) = 0
    q = point_add(scalar_mult(s, BASE), point_neg(point_add(r, scalar_mult(k, a))))
    return "valid" if is_identity(scalar_mult(8, q)) else "bad_signature"


def libsodium_applies(pk: bytes, sig: bytes) -> bool:
    """Inputs on which libsodium and ZIP-215 must agree: every point that decodes is the
    canonical encoding of a prime-order point. (A point that does not decode is rejected by
    both.)"""
    for enc in (pk, sig[:32]):
        if decode_point(enc) is not None and not prime_order_canonical(enc):
            return False
    return True


NACL_CONSULTED = set()  # (pk, sig, msg) checked with PyNaCl
NACL_SKIPPED = set()  # edge cases where libsodium is stricter than ZIP-215 by design


def nacl_valid(pk: bytes, sig: bytes, msg: bytes) -> bool:
    NACL_CONSULTED.add((pk, sig, msg))
    try:
        nacl.signing.VerifyKey(pk).verify(msg, sig)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False


def check_signature(pk: bytes, sig: bytes, msg: bytes, expected: str, what: str):
    """Both verifiers where they apply; returns the ZIP-215 verdict."""
    verdict = zip215_verdict(pk, sig, msg)
    same(f"{what}: ZIP-215 verdict", verdict, expected)
    if libsodium_applies(pk, sig):
        same(f"{what}: PyNaCl verdict", nacl_valid(pk, sig, msg), expected == "valid")
    else:
        NACL_SKIPPED.add((pk, sig, msg))
    return verdict


def seed_pubkey(seed_hex: str) -> bytes:
    return bytes(nacl.signing.SigningKey(bytes.fromhex(seed_hex)).verify_key)


def nacl_sign(seed_hex: str, msg: bytes) -> str:
    return nacl.signing.SigningKey(bytes.fromhex(seed_hex)).sign(msg).signature.hex()


# -----------------------------------------------------------------------------------------
# RFC 9162 Merkle trees with BLAKE3
# -----------------------------------------------------------------------------------------


def leaf_hash(d: bytes) -> bytes:
    return b3(b"\x00" + d)


def node_hash(left: bytes, right: bytes) -> bytes:
    return b3(b"\x01" + left + right)


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(ds: list[bytes]) -> bytes:
    if not ds:
        return b3(b"")
    if len(ds) == 1:
        return leaf_hash(ds[0])
    k = split(len(ds))
    return node_hash(mth(ds[:k]), mth(ds[k:]))


def audit_path(m: int, ds: list[bytes]) -> list[bytes]:
    if len(ds) <= 1:
        return []
    k = split(len(ds))
    if m < k:
        return audit_path(m, ds[:k]) + [mth(ds[k:])]
    return audit_path(m - k, ds[k:]) + [mth(ds[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# -----------------------------------------------------------------------------------------
# Attestations: strict schema and the rules of docs/protocol.md §2.3
# -----------------------------------------------------------------------------------------

MAX_SAFE = 2**53 - 1
HEX = re.compile(r"[0-9a-f]*")
RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)"
)


class Rejected(Exception):
    def __init__(self, kind: str, field: str | None):
        super().__init__(f"{kind} at {field}")
        self.kind, self.field = kind, field


class Obj(dict):
    """A JSON object that remembers duplicate keys."""

    dups: set


def _pairs(pairs):
    o = Obj()
    o.dups = set()
    for k, v in pairs:
        if k in o:
            o.dups.add(k)
        o[k] = v
    return o


def _no_constant(name):
    raise Rejected("invalid_json", None)


def parse_body(text: str):
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise Rejected("invalid_json", None) from None


STR, U32, U64, NUM, MAP = "str", "u32", "u64", "num", "map"
SCHEMA = {
    "version": STR,
    "anchor": {"chain_id": STR, "genesis_merkle_root": STR, "block_ref?": STR},
    "attester": {"id": STR, "pubkey_ed25519": STR},
    "resources?": {"cpu_cores?": U32, "ram_gb?": U32, "gpu_vram_gb?": U32, "wallclock_sec?": U64},
    "evidence": {
        "pack_sha256": STR,
        "pack_bytes?": U64,
        "files_processed?": U64,
        "redactions_count?": U64,
        "methodology_ref?": STR,
    },
    "measurement": {"dimensions": MAP, "weights": MAP, "impact_score": NUM},
    "benchmarks?": {"pre?": MAP, "post?": MAP, "delta?": NUM},
    "time_window": (STR, STR),
    "nonce": STR,
    "signature": {"alg": STR, "sig_base16": STR},
}


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return key if path == "." else f"{path}.{key}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v, path):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Rejected("schema", path)
    if isinstance(v, float) and not math.isfinite(v):
        raise Rejected("invalid_json", path)  # 1e999: beyond the doubles
    if isinstance(v, int) and abs(v) > MAX_SAFE:
        raise Rejected("schema", path)  # would be rounded; rfc8785 refuses it


def _walk(v, spec, path):
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            raise Rejected("schema", path)
        if getattr(v, "dups", None):
            raise Rejected("schema", path)
        fields = {k.rstrip("?"): k.endswith("?") for k in spec}
        for k, child in v.items():
            if k not in fields:
                raise Rejected("schema", _join(path, k))
            sub = spec[k + "?" if fields[k] else k]
            if child is None:
                raise Rejected("schema", _join(path, k))
            _walk(child, sub, _join(path, k))
        if any(not opt and k not in v for k, opt in fields.items()):
            raise Rejected("schema", path)
    elif isinstance(spec, tuple):
        if not isinstance(v, list) or len(v) != len(spec):
            raise Rejected("schema", path)
        for i, (child, sub) in enumerate(zip(v, spec)):
            _walk(child, sub, _join(path, i))
    elif spec == STR:
        if not isinstance(v, str):
            raise Rejected("schema", path)
    elif spec in (U32, U64):
        top = 2**32 - 1 if spec == U32 else MAX_SAFE
        if not _is_int(v) or not 0 <= v <= top:
            raise Rejected("schema", path)
    elif spec == NUM:
        _number(v, path)
    elif spec == MAP:
        if not isinstance(v, dict) or getattr(v, "dups", None):
            raise Rejected("schema", path)
        for i, (name, value) in enumerate(v.items()):
            if not 1 <= len(name) <= 64 or i == 64:
                raise Rejected("schema", path)
            _number(value, _join(path, name))


def check_schema(v):
    _walk(v, SCHEMA, ".")
    if not 1 <= len(v["attester"]["id"]) <= 128:
        raise Rejected("schema", "attester.id")


def canonical_bytes(att) -> bytes:
    blank = json.loads(json.dumps(att))
    blank["signature"]["sig_base16"] = ""
    return jcs(blank)


def parse_time(s: str) -> dt.datetime:
    if not RFC3339.fullmatch(s):
        raise ValueError(s)
    return dt.datetime.fromisoformat(s.upper().replace("Z", "+00:00"))


def impact_score(dims: dict, weights: dict) -> float:
    """Σ dim·weight in name order (code point order = UTF-8 byte order), from 0."""
    total = 0.0
    for name in sorted(dims):
        total += dims[name] * weights.get(name, 0.0)
    return total


def rules(a, network, now: dt.datetime, prior) -> str:
    """docs/protocol.md §2.3, in order; the first failure is returned, or "valid"."""
    if a["version"] != "poi-1.0":
        return "invalid_version"
    if a["anchor"]["chain_id"] != network["chain_id"]:
        return "chain_mismatch"
    if a["anchor"]["genesis_merkle_root"] != network["genesis_merkle_root"]:
        return "genesis_mismatch"
    ev = a["evidence"]["pack_sha256"]
    if len(ev) != 64 or not HEX.fullmatch(ev):
        return "invalid_evidence_hash"
    nonce = a["nonce"]
    if not 32 <= len(nonce.encode()) <= 128 or not HEX.fullmatch(nonce):
        return "invalid_nonce"
    try:
        start, end = (parse_time(t) for t in a["time_window"])
    except ValueError:
        return "invalid_time_window"
    if start > end or end > now + dt.timedelta(minutes=5) or end - start > dt.timedelta(days=366):
        return "invalid_time_window"
    m = a["measurement"]
    if any(not (math.isfinite(d) and 0.0 <= d <= 1.0) for d in m["dimensions"].values()):
        return "dimension_out_of_range"
    total = 0.0
    for name in sorted(m["weights"]):
        w = m["weights"][name]
        if not math.isfinite(w) or w < 0.0:
            return "weights_sum"
        total += w
    if abs(total - 1.0) > 1e-6:
        return "weights_sum"
    claimed = m["impact_score"]
    if not math.isfinite(claimed) or abs(claimed - impact_score(m["dimensions"], m["weights"])) > 1e-6:
        return "impact_mismatch"
    b = a.get("benchmarks") or {}
    pre, post = (b.get("pre") or {}).get("performance"), (b.get("post") or {}).get("performance")
    if pre is not None and post is not None:
        if b.get("delta") is None or abs(b["delta"] - (post - pre)) > 1e-6:
            return "benchmark_delta_mismatch"
    if a["signature"]["alg"] != "ed25519":
        return "unsupported_signature_alg"
    pk = a["attester"]["pubkey_ed25519"]
    if not (pk.startswith("ed25519:") and len(pk) == 72 and HEX.fullmatch(pk[8:])):
        return "invalid_pubkey"
    point = decode_point(bytes.fromhex(pk[8:]))
    if point is None or is_identity(scalar_mult(8, point)):
        # Not a point, or a small-order one (anyone can sign for it under ZIP-215).
        return "invalid_pubkey"
    sig = a["signature"]["sig_base16"]
    if len(sig) != 128 or not HEX.fullmatch(sig):
        return "bad_signature"
    digest = b3(canonical_bytes(a))
    if zip215_verdict(bytes.fromhex(pk[8:]), bytes.fromhex(sig), b"bizra/poi/v1" + digest) != "valid":
        return "bad_signature"
    if prior is not None:
        p_att, p_digest = prior
        same_key = p_att["attester"]["pubkey_ed25519"] == pk
        if same_key and p_att["nonce"] == nonce and p_digest != digest:
            return "duplicate_nonce"
    return "valid"


def _hexkey(s: str):
    """The 32 key bytes of an `ed25519:` + 64 lowercase hex string, or None."""
    if s.startswith("ed25519:") and len(s) == 72 and HEX.fullmatch(s[8:]):
        return bytes.fromhex(s[8:])
    return None


def check_attestation_top(doc):
    for k in ("test_key", "other_key"):
        same(f"{k} pubkey from seed", "ed25519:" + seed_pubkey(doc[k]["seed"]).hex(), doc[k]["pubkey"])
    same("signing_tag", doc["signing_tag"], "bizra/poi/v1")
    parse_time(doc["now"])


def check_attestation_case(doc, c):
    now = parse_time(doc["now"])
    if "body" in c:
        try:
            v = parse_body(c["body"])
            check_schema(v)
        except Rejected as r:
            same("kind", r.kind, c["expected"])
            # A syntax error's path is where a streaming parser stopped: implementation
            # detail, checked by the Rust tests only.
            if r.field is not None:
                same("field", r.field, c["field"])
            return
        raise Mismatch(f"body accepted, vector expects {c['expected']} at {c['field']}")

    a = c["attestation"]
    check_schema(parse_body(json.dumps(a)))  # accepted by the schema
    canonical = canonical_bytes(a)
    same("canonical_hex", canonical.hex(), c["canonical_hex"])
    same("canonical", canonical.decode("utf-8"), c["canonical"])
    digest = b3(canonical)
    same("digest", digest.hex(), c["digest"])
    msg = b"bizra/poi/v1" + digest
    same("signing_message_hex", msg.hex(), c["signing_message_hex"])
    same("signature", a["signature"]["sig_base16"], c["signature"])
    same("pubkey", a["attester"]["pubkey_ed25519"], c["pubkey"])

    pk = _hexkey(c["pubkey"])
    sig_hex = c["signature"]
    if pk is None or len(sig_hex) != 128 or not HEX.fullmatch(sig_hex):
        same("signature_valid", None, c["signature_valid"])
    else:
        sig = bytes.fromhex(sig_hex)
        verdict = zip215_verdict(pk, sig, msg)
        same("signature_valid (ZIP-215)", verdict == "valid", c["signature_valid"])
        if libsodium_applies(pk, sig):
            same("signature_valid (PyNaCl)", nacl_valid(pk, sig, msg), c["signature_valid"])
        else:
            NACL_SKIPPED.add((pk, sig, msg))
        if verdict == "valid" and c["pubkey"] == doc["test_key"]["pubkey"]:
            # Deterministic RFC 8032 signing reproduces the very signature.
            same("signature by the test key", nacl_sign(doc["test_key"]["seed"], msg), sig_hex)

    prior = None
    if "prior" in c:
        pa = c["prior"]["attestation"]
        check_schema(parse_body(json.dumps(pa)))
        p_digest = b3(canonical_bytes(pa))
        same("prior.digest", p_digest.hex(), c["prior"]["digest"])
        same("prior is valid", rules(pa, doc["network"], now, None), "valid")
        prior = (pa, p_digest)
    same("outcome", rules(a, doc["network"], now, prior), c["expected"])


# -----------------------------------------------------------------------------------------
# Files
# -----------------------------------------------------------------------------------------


def check_merkle_top(doc):
    leaves = [bytes.fromhex(h) for h in doc["leaves"]]
    for i, leaf in enumerate(leaves):
        same(f"leaves[{i}]", leaf, b3(i.to_bytes(4, "big")))
    same("empty_root", mth([]).hex(), doc["empty_root"])
    same("number of trees", len(doc["trees"]), len(leaves))


def check_merkle_tree(doc, t):
    leaves = [bytes.fromhex(h) for h in doc["leaves"]][: t["size"]]
    same("size", len(leaves), t["size"])
    root = mth(leaves)
    same("root", root.hex(), t["root"])
    same("number of proofs", len(t["proofs"]), len(leaves))
    for i, p in enumerate(t["proofs"]):
        same(f"proofs[{i}].leaf_index", p["leaf_index"], i)
        same(f"proofs[{i}].tree_size", p["tree_size"], len(leaves))
        same(f"proofs[{i}].hashes", p["hashes"], [h.hex() for h in audit_path(i, leaves)])
        path = [bytes.fromhex(h) for h in p["hashes"]]
        if not verify_inclusion(p["leaf_index"], p["tree_size"], leaves[i], path, root):
            raise Mismatch(f"proofs[{i}] does not verify")


def _ms(rfc3339: str) -> int:
    t = parse_time(rfc3339)
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)


def _check_header_text(obj, header):
    text = jcs(header)
    same("header_canonical", text.decode("utf-8"), obj["header_canonical"])
    same("hash", b3(text).hex(), obj["hash"])


# docs/protocol.md §3.1, §3.4, §3.5 and the constants table.
BLOCK_VERSION = 2
BLOCK_TAG = b"bizra/block/v2"
VOTE_TAG = b"bizra/vote/v2"
REGISTER_TAG = b"bizra/register/v1"
EXIT_TAG = b"bizra/exit/v1"
SLOT_MS = 2000
EPOCH_SLOTS = 32
INITIAL_REP_SCORE = 500
FINALITY_THRESHOLD_BPS = 6667
MAX_PARENTS = 100


def check_genesis(doc):
    g = doc["genesis"]
    f = g["file"]
    text = jcs(f)
    same("genesis file_canonical", text.decode("utf-8"), g["file_canonical"])
    digest = b3(text)
    same("genesis file_digest", digest.hex(), g["file_digest"])
    keys = [_hexkey(v["pubkey_ed25519"]) for v in f["validators"]]
    ids = [b3(k).hex() for k in keys]
    same("genesis validator_ids", ids, g["validator_ids"])
    same("genesis validator_key_seeds", [seed_pubkey(x) for x in g["validator_key_seeds"]], keys)
    # A genesis validator starts with no impact and the initial reputation (§2.4, §3.5).
    weights = [effective_weight(0.0, INITIAL_REP_SCORE, v["stake_bond"])[1] for v in f["validators"]]
    same("genesis validator_weights", weights, g["validator_weights"])
    want = {
        "version": BLOCK_VERSION,
        "chain_id": f["chain_id"],
        "epoch": 0,
        "height": 0,
        "parents": [],
        "att_root": mth([]).hex(),
        "att_count": 0,
        "entries_root": mth([]).hex(),
        "entries_count": 0,
        "proposer": digest.hex(),
        "timestamp_ms": _ms(f["genesis_time"]),
    }
    same("genesis header", g["header"], want)
    _check_header_text(g, g["header"])


def _validators(doc):
    """validator id (hex) -> (public key, key seed hex, weight), from the genesis."""
    g = doc["genesis"]
    return {
        b3(_hexkey(v["pubkey_ed25519"])).hex(): (_hexkey(v["pubkey_ed25519"]), seed, w)
        for v, seed, w in zip(g["file"]["validators"], g["validator_key_seeds"], g["validator_weights"])
    }


def check_entry(doc, e, h, what):
    """A registry entry: its rfc8785 bytes and id, its epoch, and its own signature."""
    entry = e["entry"]
    text = jcs(entry)
    same(f"{what}.canonical", text.decode("utf-8"), e["canonical"])
    same(f"{what}.id", b3(text).hex(), e["id"])
    same(f"{what} chain_id", entry["chain_id"], h["chain_id"])
    # The registry takes an entry only in the epoch it names.
    same(f"{what} epoch", entry["epoch"], h["epoch"])
    sig = bytes.fromhex(entry["signature"])
    if entry["type"] == "register":
        fields = ("chain_id", "epoch", "pubkey_ed25519", "network_address", "stake_bond")
        body = {k: entry[k] for k in fields}
        same(f"{what} fields", sorted(entry), sorted(fields + ("signature", "type")))
        pk = _hexkey(entry["pubkey_ed25519"])
        msg = REGISTER_TAG + b3(jcs(body))
    elif entry["type"] == "exit":
        fields = ("chain_id", "epoch", "validator_id")
        body = {k: entry[k] for k in fields}
        same(f"{what} fields", sorted(entry), sorted(fields + ("signature", "type")))
        validator = _validators(doc).get(entry["validator_id"])
        if validator is None:
            raise Mismatch(f"{what}: exit by {entry['validator_id']}, not a genesis validator")
        pk = validator[0]
        msg = EXIT_TAG + b3(jcs(body))
    else:
        raise Mismatch(f"{what}: an entry of type {entry['type']!r} has no check here")
    check_signature(pk, sig, msg, "valid", f"{what} signature")


def check_block(doc, i):
    b = doc["blocks"][i]
    h = b["header"]
    g = doc["genesis"]
    known = {g["hash"]: g["header"]}
    known.update({x["hash"]: x["header"] for x in doc["blocks"][:i]})
    validators = _validators(doc)
    same("version", h["version"], BLOCK_VERSION)
    same("chain_id", h["chain_id"], g["file"]["chain_id"])
    t0 = _ms(g["file"]["genesis_time"])
    same("epoch", h["epoch"], (h["timestamp_ms"] - t0) // (EPOCH_SLOTS * SLOT_MS))

    # Parents (§3.1): sorted, unique, known; genesis alone under height 1, else blocks of
    # height h-1 of the same epoch by distinct proposers holding >= 2/3 of the weight.
    parents = h["parents"]
    same("parents sorted and unique", parents, sorted(set(parents)))
    if not 1 <= len(parents) <= MAX_PARENTS or any(p not in known for p in parents):
        raise Mismatch(f"parents {parents} are not 1 to {MAX_PARENTS} earlier blocks")
    if h["height"] == 1:
        same("the parent of a height-1 block", parents, [g["hash"]])
    else:
        if h["height"] < 2:
            raise Mismatch(f"height {h['height']} for a block with parents")
        for p in parents:
            same(f"height of parent {p}", known[p]["height"], h["height"] - 1)
            same(f"epoch of parent {p}", known[p]["epoch"], h["epoch"])
        by = [known[p]["proposer"] for p in parents]
        same("parents by distinct proposers", len(set(by)), len(by))
        weight = sum(validators[x][2] for x in by if x in validators)
        total = sum(v[2] for v in validators.values())
        if not weight * 10000 >= total * FINALITY_THRESHOLD_BPS:
            raise Mismatch(f"parents hold {weight} of {total} weight, less than 2/3")

    ids = [bytes.fromhex(x) for x in b["attestation_ids"]]
    same("att_count", h["att_count"], len(ids))
    same("att_root", h["att_root"], mth(ids).hex())
    same("entry_ids are the entries' ids", b["entry_ids"], [e["id"] for e in b["entries"]])
    for j, e in enumerate(b["entries"]):
        check_entry(doc, e, h, f"entries[{j}]")
    entry_ids = [bytes.fromhex(x) for x in b["entry_ids"]]
    same("entries_count", h["entries_count"], len(entry_ids))
    same("entries_root", h["entries_root"], mth(entry_ids).hex())

    pk = seed_pubkey(b["proposer_key_seed"])
    same("proposer_pubkey", "ed25519:" + pk.hex(), b["proposer_pubkey"])
    same("proposer", h["proposer"], b3(pk).hex())
    _check_header_text(b, h)
    msg = BLOCK_TAG + bytes.fromhex(b["hash"])
    check_signature(pk, bytes.fromhex(b["signature"]), msg, "valid", "block signature")
    same("signature by the proposer seed", nacl_sign(b["proposer_key_seed"], msg), b["signature"])

    # One vote by each genesis validator, in genesis order (§3.4).
    same("voters", [v["validator_id"] for v in b["votes"]], g["validator_ids"])
    vote_msg = VOTE_TAG + bytes.fromhex(b["hash"])
    for v in b["votes"]:
        what = f"vote by {v['validator_id'][:8]}"
        same(f"{what}: fields", sorted(v), ["block_hash", "signature", "validator_id"])
        same(f"{what}: block_hash", v["block_hash"], b["hash"])
        vpk, seed, _ = validators[v["validator_id"]]
        check_signature(vpk, bytes.fromhex(v["signature"]), vote_msg, "valid", what)
        same(f"{what}: by its seed", nacl_sign(seed, vote_msg), v["signature"])


def effective_weight(impact: float, rep: int, stake: int):
    raw = 100.0 + 10.0 * impact + 0.05 * float(rep) + 0.02 * math.sqrt(float(stake))
    if not math.isfinite(raw) or raw <= 0.0:
        return raw, 0
    return raw, min(math.floor(raw), 2**64 - 1)


def check_weight_case(doc, c):
    raw, w = effective_weight(c["impact"], c["rep_score"], c["stake_bond"])
    same("raw", raw, c["raw"])
    same("expected", w, c["expected"])


def check_impact_case(doc, c):
    same("impact", impact_score(c["dimensions"], c["weights"]), c["impact"])


def check_weights_top(doc):
    refs = {c["name"]: c for c in doc["effective_weight"]}
    for name, args, want in [
        ("spec_reference_zero", (0, 0, 0), 100),
        ("spec_reference_high_impact", (50, 10000, 10000), 1102),
        ("spec_reference_typical", (0.876, 10000, 10000), 610),
    ]:
        c = refs[name]
        same(f"{name} inputs", (c["impact"], c["rep_score"], c["stake_bond"]), args)
        same(f"{name} (docs/protocol.md §2.4)", c["expected"], want)


def check_signature_case(doc, c):
    check_signature(
        bytes.fromhex(c["pubkey"]),
        bytes.fromhex(c["signature"]),
        bytes.fromhex(c["message_hex"]),
        c["expected"],
        "verdict",
    )


# Per file: the file-wide check, and (list of cases, check of one case).
FILES = {
    "attestations.json": (check_attestation_top, [(lambda d: d["cases"], check_attestation_case)]),
    "merkle.json": (check_merkle_top, [(lambda d: d["trees"], check_merkle_tree)]),
    "blocks.json": (
        check_genesis,
        [(lambda d: list(range(len(d["blocks"]))), check_block)],
    ),
    "weights.json": (
        check_weights_top,
        [
            (lambda d: d["effective_weight"], check_weight_case),
            (lambda d: d["impact_score"], check_impact_case),
        ],
    ),
    "signatures.json": (None, [(lambda d: d["cases"], check_signature_case)]),
}


def _label(case, i):
    if isinstance(case, dict) and "name" in case:
        return case["name"]
    if isinstance(case, dict) and "size" in case:
        return f"tree of {case['size']}"
    return f"#{i}"


def check_file(name: str, doc) -> tuple[int, list[str]]:
    top, groups = FILES[name]
    passed, failures = 0, []
    if top is not None:
        try:
            top(doc)
            passed += 1
        except (Mismatch, Rejected, KeyError, ValueError, TypeError) as e:
            failures.append(f"{name}: {type(e).__name__}: {e}")
    for cases_of, check in groups:
        for i, case in enumerate(cases_of(doc)):
            label = _label(doc["blocks"][case] if name == "blocks.json" else case, i)
            try:
                check(doc, case)
                passed += 1
            except (Mismatch, Rejected, KeyError, ValueError, TypeError) as e:
                failures.append(f"{name} [{label}]: {type(e).__name__}: {e}")
    return passed, failures


# -----------------------------------------------------------------------------------------
# Self-test: one changed byte in a checked field must make the check fail
# -----------------------------------------------------------------------------------------


def _changed(v):
    """The value with one byte (character, digit, bit) changed."""
    if isinstance(v, bool):
        return not v
    if v is None:
        return True
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 1.0
    if isinstance(v, str):
        last = v[-1] if v else "a"
        if last in "0123456789abcdef":
            repl = "0123456789abcdef"[("0123456789abcdef".index(last) + 1) % 16]
        else:
            repl = "a" if last != "a" else "b"
        return v[:-1] + repl
    raise TypeError(v)


def _paths(name: str, doc):
    """(description, container, key) of every field whose change must be caught: each value
    the checker recomputes, and an input of each case. Texts (names, descriptions, `about`),
    raw bodies of rejected requests, and the path of a syntax error are not recomputed."""
    if name == "attestations.json":
        for k in ("seed", "pubkey"):
            yield f"test_key.{k}", doc["test_key"], k
            yield f"other_key.{k}", doc["other_key"], k
        yield "now", doc, "now"
        yield "network.chain_id", doc["network"], "chain_id"
        yield "network.genesis_merkle_root", doc["network"], "genesis_merkle_root"
        yield "signing_tag", doc, "signing_tag"
        for c in doc["cases"]:
            n = c["name"]
            yield f"{n}.expected", c, "expected"
            if "body" in c:
                if not c["expected"] == "invalid_json" or n == "schema_number_out_of_range":
                    yield f"{n}.field", c, "field"
                continue
            for k in ("canonical_hex", "canonical", "digest", "signing_message_hex", "signature", "pubkey", "signature_valid"):
                yield f"{n}.{k}", c, k
            yield f"{n}.attestation.nonce", c["attestation"], "nonce"
            yield f"{n}.attestation.evidence.pack_sha256", c["attestation"]["evidence"], "pack_sha256"
            yield f"{n}.attestation.measurement.impact_score", c["attestation"]["measurement"], "impact_score"
            if "prior" in c:
                yield f"{n}.prior.digest", c["prior"], "digest"
                yield f"{n}.prior.attestation.evidence.pack_sha256", c["prior"]["attestation"]["evidence"], "pack_sha256"
    elif name == "merkle.json":
        for i in range(len(doc["leaves"])):
            yield f"leaves[{i}]", doc["leaves"], i
        yield "empty_root", doc, "empty_root"
        for t in doc["trees"]:
            yield f"tree {t['size']}.size", t, "size"
            yield f"tree {t['size']}.root", t, "root"
            for i, p in enumerate(t["proofs"]):
                yield f"tree {t['size']}.proofs[{i}].leaf_index", p, "leaf_index"
                yield f"tree {t['size']}.proofs[{i}].tree_size", p, "tree_size"
                for j in range(len(p["hashes"])):
                    yield f"tree {t['size']}.proofs[{i}].hashes[{j}]", p["hashes"], j
    elif name == "blocks.json":
        g = doc["genesis"]
        for k in ("file_canonical", "file_digest", "header_canonical", "hash"):
            yield f"genesis.{k}", g, k
        for k in ("chain_id", "genesis_time", "genesis_merkle_root"):
            yield f"genesis.file.{k}", g["file"], k
        for i, v in enumerate(g["file"]["validators"]):
            for k in v:
                yield f"genesis.file.validators[{i}].{k}", v, k
        for k in ("validator_ids", "validator_key_seeds", "validator_weights"):
            for i in range(len(g[k])):
                yield f"genesis.{k}[{i}]", g[k], i
        for k in g["header"]:
            if k != "parents":
                yield f"genesis.header.{k}", g["header"], k
        for b in doc["blocks"]:
            n = b["name"]
            for k in ("header_canonical", "hash", "signature", "proposer_key_seed", "proposer_pubkey"):
                yield f"{n}.{k}", b, k
            for k in b["header"]:
                if k != "parents":
                    yield f"{n}.header.{k}", b["header"], k
            for i in range(len(b["header"]["parents"])):
                yield f"{n}.header.parents[{i}]", b["header"]["parents"], i
            for i in range(len(b["attestation_ids"])):
                yield f"{n}.attestation_ids[{i}]", b["attestation_ids"], i
            for i in range(len(b["entry_ids"])):
                yield f"{n}.entry_ids[{i}]", b["entry_ids"], i
            for i, e in enumerate(b["entries"]):
                for k in ("canonical", "id"):
                    yield f"{n}.entries[{i}].{k}", e, k
                for k in e["entry"]:
                    if k != "type":
                        yield f"{n}.entries[{i}].entry.{k}", e["entry"], k
            for i, v in enumerate(b["votes"]):
                for k in v:
                    yield f"{n}.votes[{i}].{k}", v, k
    elif name == "weights.json":
        for c in doc["effective_weight"]:
            for k in ("raw", "expected"):
                yield f"{c['name']}.{k}", c, k
            # An input whose change does not move the double result (stake_bond + 1 next
            # to 1e301, say) leaves a correct vector: only the others must be noticed.
            args = {k: c[k] for k in ("impact", "rep_score", "stake_bond")}
            for k in args:
                if effective_weight(*{**args, k: _changed(args[k])}.values()) != effective_weight(*args.values()):
                    yield f"{c['name']}.{k}", c, k
        for c in doc["impact_score"]:
            yield f"{c['name']}.impact", c, "impact"
    elif name == "signatures.json":
        for c in doc["cases"]:
            yield f"{c['name']}.expected", c, "expected"
            if c["expected"] == "valid":
                # A valid case must stop verifying when S changes. (An invalid one may stay
                # invalid whatever byte changes, so only its verdict is mutated.)
                yield f"{c['name']}.signature (S)", c, "signature"


def self_test(docs) -> int:
    missed, total = [], 0
    for name, doc in docs.items():
        for what, container, key in list(_paths(name, doc)):
            old = container[key]
            container[key] = _changed(old)
            try:
                _, failures = check_file(name, doc)
            finally:
                container[key] = old
            total += 1
            if not failures:
                missed.append(f"{name}: a change to {what} went unnoticed")
        _, failures = check_file(name, doc)
        assert not failures, failures  # restored
    for m in missed:
        print(m)
    print(f"self-test: {total - len(missed)} of {total} single-field changes detected")
    return 1 if missed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=HERE)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    docs = {name: json.loads((args.dir / name).read_text("utf-8")) for name in FILES}
    passed, failed = 0, 0
    for name, doc in docs.items():
        p, failures = check_file(name, doc)
        for f in failures:
            print("FAIL", f)
        print(f"{name}: {p} passed, {len(failures)} failed")
        passed, failed = passed + p, failed + len(failures)
    print(
        f"signatures: {len(NACL_CONSULTED)} also checked with PyNaCl; {len(NACL_SKIPPED)} "
        "small-order, mixed-order or non-canonical ones with the ZIP-215 verifier only"
    )
    print(f"vectors: {passed} passed, {failed} failed")
    status = 1 if failed else 0
    if args.self_test and not failed:
        status |= self_test(docs)
    return status


if __name__ == "__main__":
    sys.exit(main())
