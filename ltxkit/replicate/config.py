"""`ltxkit replicate --config FILE`: Litestream's YAML, for what ltxkit supports.

Accepted, as Litestream spells them: `dbs[].path`, `dbs[].replica.url` (or `.path`; a
one-element `replicas:` list too), an S3 replica given by its fields (`type: s3`, `bucket`,
`path`, `endpoint`, `region`, `force-path-style`, `skip-verify`, `access-key-id`,
`secret-access-key`; each also at the top, as every replica's default), `levels[].interval`, `snapshot.interval`,
`snapshot.retention`, `l0-retention`, `l0-retention-check-interval`, `checkpoint-interval`,
`min-checkpoint-page-count`, `truncate-page-n`, `sync-interval` (the last five at the top, per
database, or — `sync-interval` — per replica). Durations are Go's (`1s`, `500ms`, `1h30m`).
Every key ltxkit does not use is named in a warning: nothing is silently ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ltxkit.errors import UsageError
from ltxkit.replicate.engine import Options
from ltxkit.replicate.lifecycle import Policy

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DB_TUNING = {
    "checkpoint-interval": "checkpoint_interval_s",
    "min-checkpoint-page-count": "min_checkpoint_pages",
    "truncate-page-n": "truncate_pages",
    "sync-interval": "interval_s",
}
# an S3 replica's fields, per replica or at the top as every replica's default (Litestream's
# `ReplicaSettings`)
_S3_KEYS = ("bucket", "endpoint", "region", "force-path-style", "skip-verify", "access-key-id", "secret-access-key")
_TOP_KEYS = {"dbs", "levels", "snapshot", "l0-retention", "l0-retention-check-interval", *_DB_TUNING, *_S3_KEYS}
_DB_KEYS = {"path", "replica", "replicas", *_DB_TUNING}
_REPLICA_KEYS = {"url", "path", "type", "sync-interval", *_S3_KEYS}


class ConfigError(UsageError):
    """The config file cannot be used (exit 2)."""


def parse_duration(text: str | int | float, where: str) -> float:
    """A Go duration ('1s', '250ms', '1h30m'; a bare number is seconds) in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = _GO_DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise ConfigError(f"{where}: {text!r} is not a duration (such as 1s, 500ms, 1h30m)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True, slots=True)
class DbConfig:
    path: Path
    replica: str
    options: Options
    policy: Policy | None
    credentials: dict[str, str] | None = None  # an S3 replica's keys from the config, over the environment


@dataclass(slots=True)
class Config:
    dbs: list[DbConfig] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _unknown(where: str, data: dict[str, Any], known: set[str], warnings: list[str]) -> None:
    for key in sorted(set(data) - known):
        warnings.append(f"{where}{key}: not supported by ltxkit replicate, ignored")


def _tuning(data: dict[str, Any], base: Options, where: str) -> Options:
    changes: dict[str, Any] = {}
    for key, attr in _DB_TUNING.items():
        if key in data:
            value = data[key]
            if attr.endswith("_s"):
                changes[attr] = parse_duration(value, f"{where}{key}")
            else:
                try:
                    changes[attr] = int(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"{where}{key}: {value!r} is not a whole number") from None
    return replace(base, **changes)


def load(data: Any, source: str, *, base: Options, policy: Policy | None) -> Config:
    """The config in `data` (parsed YAML); `base` and `policy` give the defaults it changes."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a `dbs:` list")
    cfg = Config()
    _unknown("", data, _TOP_KEYS, cfg.warnings)
    options = _tuning(data, base, "")
    if policy is not None:
        if "levels" in data:
            levels = data["levels"] or []
            intervals = []
            for i, lv in enumerate(levels):
                if not isinstance(lv, dict) or "interval" not in lv:
                    raise ConfigError(f"{source}: levels[{i}]: expected `interval:`")
                _unknown(f"levels[{i}].", lv, {"interval"}, cfg.warnings)
                intervals.append((i + 1, parse_duration(lv["interval"], f"levels[{i}].interval")))
            policy = replace(policy, levels=tuple(intervals))
        snap = data.get("snapshot") or {}
        if not isinstance(snap, dict):
            raise ConfigError(f"{source}: snapshot: expected interval and retention")
        _unknown("snapshot.", snap, {"interval", "retention"}, cfg.warnings)
        if "interval" in snap:
            policy = replace(policy, snapshot_interval_s=parse_duration(snap["interval"], "snapshot.interval"))
        if "retention" in snap:
            policy = replace(policy, snapshot_retention_s=parse_duration(snap["retention"], "snapshot.retention"))
        if "l0-retention" in data:
            policy = replace(policy, l0_retention_s=parse_duration(data["l0-retention"], "l0-retention"))
        if "l0-retention-check-interval" in data:
            policy = replace(
                policy,
                l0_retention_check_s=parse_duration(data["l0-retention-check-interval"], "l0-retention-check-interval"),
            )
    dbs = data.get("dbs")
    if not isinstance(dbs, list) or not dbs:
        raise ConfigError(f"{source}: no databases (`dbs:` with at least one `path:`)")
    for i, db in enumerate(dbs):
        where = f"dbs[{i}]."
        if not isinstance(db, dict) or "path" not in db:
            raise ConfigError(f"{source}: {where}path is missing")
        _unknown(where, db, _DB_KEYS, cfg.warnings)
        replica = db.get("replica")
        if replica is None and isinstance(db.get("replicas"), list) and db["replicas"]:
            if len(db["replicas"]) > 1:  # as Litestream 0.5 refuses it: one replica per database
                raise ConfigError(
                    f"{source}: {where}replicas: {len(db['replicas'])} replicas for one database; Litestream 0.5 "
                    "and ltxkit replicate to one (Litestream: multiple replicas on a single database are no "
                    "longer supported)"
                )
            replica = db["replicas"][0]
        if not isinstance(replica, dict):
            raise ConfigError(f"{source}: {where}replica needs a `url:` (or `path:`)")
        _unknown(f"{where}replica.", replica, _REPLICA_KEYS, cfg.warnings)
        db_options = _tuning(db, options, where)
        if "sync-interval" in replica:
            db_options = replace(db_options, interval_s=parse_duration(replica["sync-interval"], f"{where}replica."))
        s3 = {key: replica[key] if key in replica else data[key] for key in _S3_KEYS if key in replica or key in data}
        url, credentials = _replica_location(replica, s3, f"{source}: {where}replica")
        cfg.dbs.append(DbConfig(Path(str(db["path"])).expanduser(), url, db_options, policy, credentials))
    unused = sorted(key for key in _S3_KEYS if key in data)
    if unused and not any(db.replica.startswith("s3://") for db in cfg.dbs):
        cfg.warnings.append(f"{', '.join(unused)}: no replica is in S3, ignored")
    return cfg


def _replica_location(replica: dict[str, Any], s3: dict[str, Any], where: str) -> tuple[str, dict[str, str] | None]:
    """The replica's URL (a directory path, or `s3://...` built from its fields as Litestream
    builds its client) and the S3 keys the config gives (None: the environment's).

    A config whose S3 fields ltxkit would not use is refused, never read as a local path: a
    replica `path:` with a `bucket:` taken as a directory backs up to the wrong place, quietly."""
    kind = str(replica.get("type") or "").lower()
    url, path = replica.get("url"), replica.get("path")
    if url and path:
        raise ConfigError(f"{where}: give `url:` or `path:`, not both")
    if kind not in ("", "file", "s3"):
        raise ConfigError(f"{where}: type {kind!r} is not supported by ltxkit (file or s3)")
    if url:
        url = str(url)
        if kind and kind != (url.split("://", 1)[0].lower() if "://" in url else "file"):
            raise ConfigError(f"{where}: type {kind} does not match url {url}")
        if "bucket" in replica:  # as Litestream: the URL names the bucket
            raise ConfigError(f"{where}: give `url:` or `bucket:`, not both")
        kind = "s3" if url.lower().startswith("s3://") else "file"
    if kind != "s3":
        named = sorted(k for k in _S3_KEYS if k in replica)
        if named:
            raise ConfigError(
                f"{where}: {', '.join(named)} given for a replica that is not S3 (add `type: s3`, "
                "or use `url: s3://bucket/path`)"
            )
        if not (url or path):
            raise ConfigError(f"{where} needs a `url:` (or `path:`)")
        return str(url or path), None
    credentials = _credentials(s3, where)
    if url:
        return _with_options(url, s3, where), credentials
    if not s3.get("bucket"):
        raise ConfigError(f"{where}: an S3 replica needs a `bucket:` (or `url: s3://bucket/path`)")
    from urllib.parse import quote

    return _with_options(f"s3://{s3['bucket']}/{quote(str(path or '').strip('/'))}", s3, where), credentials


def _with_options(url: str, s3: dict[str, Any], where: str) -> str:
    """`url` with the config's endpoint, region, path style and certificate check as its query
    options; the config's win over the URL's own, as in Litestream."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from ltxkit.replica.s3 import FLAG_SPELLINGS, URL_OPTIONS

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key in URL_OPTIONS:
        value = s3.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif key in FLAG_SPELLINGS:
            raise ConfigError(f"{where}.{key}: {value!r} is not true or false")
        elif key == "endpoint" and not str(value).startswith(("http://", "https://")):
            # in a URL's query Litestream adds the scheme; in its config it does not, and hangs
            raise ConfigError(f"{where}.endpoint: {value} needs its scheme (http://{value} or https://{value})")
        query.pop(FLAG_SPELLINGS.get(key, ""), None)  # the URL's own, under Litestream's other spelling
        query[key] = str(value)
    return urlunsplit(parts._replace(query=urlencode(query, safe=":/")))


def _credentials(s3: dict[str, Any], where: str) -> dict[str, str] | None:
    key, secret = s3.get("access-key-id"), s3.get("secret-access-key")
    if not key and not secret:
        return None
    if not (key and secret):
        raise ConfigError(f"{where}: give both access-key-id and secret-access-key, or neither")
    return {"access_key_id": str(key), "secret_access_key": str(secret)}


_SHELL_SPECIAL = "*#$@!?-0123456789"


def expand_env(text: str) -> str:
    """Environment variables in a config, as Litestream expands them (Go's `os.Expand`): `$NAME`
    and `${NAME}` become the variable's value, empty when unset, `$PID` this process's id; a `$`
    followed by no name stays; a malformed `${` is dropped. A Litestream config naming its bucket
    or path through the environment then means the same here."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "$" or i + 1 >= n:
            out.append(text[i])
            i += 1
            continue
        name, width = _shell_name(text[i + 1 :])
        if name:
            out.append(str(os.getpid()) if name == "PID" else os.environ.get(name, ""))
        elif width == 0:
            out.append("$")
        i += 1 + width
    return "".join(out)


def _shell_name(s: str) -> tuple[str, int]:
    """The variable name at the start of `s` (after a `$`) and how many characters it took."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SHELL_SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end < 0:
            return "", 1  # "${" with no end: the brace is dropped
        return ("", end + 1) if end == 1 else (s[1:end], end + 1)
    if s[0] in _SHELL_SPECIAL:
        return s[0], 1
    width = 0
    while width < len(s) and (s[width] == "_" or (s[width].isascii() and s[width].isalnum())):
        width += 1
    return s[:width], width


def load_file(path: Path, *, base: Options, policy: Policy | None, expand: bool = True) -> Config:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); expected a YAML config") from exc
    if expand:
        text = expand_env(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return load(data, str(path), base=base, policy=policy)
