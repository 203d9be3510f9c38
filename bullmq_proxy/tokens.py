"""The token file (``TOKENS_FILE``): scoped tokens, kept as SHA-256 digests only.

JSON (TOML mirrors it, ``[[tokens]]`` tables)::

    {"tokens": [{"name": "reports", "sha256": "<hex of the token's SHA-256>",
                 "queues": ["mail-*"], "rights": ["read"],
                 "rate": {"per_second": 50, "burst": 100}}]}

``rate`` is optional. A token is checked by its digest against every entry, in constant
time. Create one (the token is printed once, only its digest is written)::

    python -m bullmq_proxy.tokens create reports --queues 'mail-*' --rights read \\
        --file tokens.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from zope.interface import implementer

from bullmq_proxy.auth import IAuthenticator
from bullmq_proxy.config import Config, ConfigError
from bullmq_proxy.logs import Logger
from bullmq_proxy.rights import RIGHT_NAMES, Principal, Rate, Right

log = Logger(namespace="bullmq_proxy.tokens")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_FIELDS = frozenset({"name", "sha256", "queues", "rights", "rate"})


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _entry(raw: Any, index: int) -> tuple[str, Principal]:
    where = f"tokens[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    extra = set(raw) - _ENTRY_FIELDS
    if extra:
        raise ValueError(f"{where} has unknown fields {sorted(extra)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.name must be a non-empty string")
    sha = raw.get("sha256")
    if not isinstance(sha, str) or not _DIGEST.match(sha):
        raise ValueError(f"{where}.sha256 must be 64 lowercase hex digits")
    queues = raw.get("queues")
    if (not isinstance(queues, list) or not queues
            or not all(isinstance(q, str) and q for q in queues)):
        raise ValueError(f"{where}.queues must be a non-empty list of queue-name patterns")
    rights = raw.get("rights")
    if (not isinstance(rights, list) or not rights
            or not all(r in RIGHT_NAMES for r in rights)):
        raise ValueError(f"{where}.rights must list some of {', '.join(RIGHT_NAMES)}")
    rate = raw.get("rate")
    if rate is not None:
        per_second, burst = (rate.get("per_second"), rate.get("burst")) \
            if isinstance(rate, dict) else (None, None)
        if (not isinstance(per_second, int | float) or isinstance(per_second, bool)
                or not math.isfinite(per_second) or not 0 < per_second <= 1e6
                or not isinstance(burst, int) or isinstance(burst, bool)
                or not 1 <= burst <= 1_000_000):
            raise ValueError(f"{where}.rate must be {{per_second (0 to 1e6), burst "
                             "(1 to 1000000)}")
        rate = Rate(float(per_second), burst)
    principal = Principal(name, tuple(queues), frozenset(Right(r) for r in rights), rate)
    return sha, principal


def parse_token_file(path: str) -> dict[str, Principal]:
    """Digest → principal; raises ``ValueError`` saying what is wrong with the file."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as err:
        raise ValueError(f"cannot be read: {err.strerror} ({path})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8")) if path.endswith(".toml") \
            else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: "
                         f"{err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens"), list):
        raise ValueError('must hold {"tokens": [...]}')
    entries: dict[str, Principal] = {}
    names: set[str] = set()
    for index, raw_entry in enumerate(document["tokens"]):
        sha, principal = _entry(raw_entry, index)
        if principal.name in names:
            raise ValueError(f"tokens[{index}].name {principal.name!r} is used twice")
        names.add(principal.name)
        entries[sha] = principal
    return entries


@implementer(IAuthenticator)
class TokenFile:
    """Authenticator of the scoped tokens in ``TOKENS_FILE``; ``reload()`` rereads it."""

    name = "token-file"

    def __init__(self, config: Config) -> None:
        self._path = config.tokens_file
        self._entries: dict[str, Principal] = {}
        if self._path is not None:
            try:
                self._entries = parse_token_file(self._path)
            except ValueError as err:
                raise ConfigError(f"TOKENS_FILE {err}") from None

    def authenticate(self, token: str) -> Principal | bool:
        given = digest(token)
        found: Principal | None = None
        # Every entry is compared, so the time taken does not say which one matched.
        for sha, principal in self._entries.items():
            if hmac.compare_digest(given, sha):
                found = principal
        return found if found is not None else False

    def reload(self) -> bool:
        """Reread the file; a file that became invalid keeps the tokens loaded before."""
        if self._path is None:
            return False
        try:
            self._entries = parse_token_file(self._path)
        except ValueError as err:
            log.error("TOKENS_FILE {error}; keeping the {count} tokens loaded before",
                      error=str(err), count=len(self._entries))
            return False
        log.info("Reloaded {count} tokens from TOKENS_FILE", count=len(self._entries))
        return True


def _append(path: str, entry: dict[str, Any]) -> None:
    if path.endswith(".toml"):
        rate = entry.get("rate")
        lines = ["", "[[tokens]]", f"name = {json.dumps(entry['name'])}",
                 f"sha256 = {json.dumps(entry['sha256'])}",
                 f"queues = {json.dumps(entry['queues'])}",
                 f"rights = {json.dumps(entry['rights'])}"]
        if rate:
            lines += ["[tokens.rate]", f"per_second = {rate['per_second']}",
                      f"burst = {rate['burst']}"]
        with open(path, "a", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        return
    document: dict[str, Any] = {"tokens": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    document["tokens"].append(entry)
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)


def create(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bullmq_proxy.tokens create",
        description="Create a scoped token: its digest goes to the token file, the token is "
                    "printed once.")
    parser.add_argument("name")
    parser.add_argument("--queues", required=True,
                        help="comma-separated queue-name patterns (glob: mail-*)")
    parser.add_argument("--rights", required=True,
                        help=f"comma-separated, among {', '.join(RIGHT_NAMES)}")
    parser.add_argument("--rate", help="PER_SECOND/BURST, e.g. 50/100")
    parser.add_argument("--file", default=os.environ.get("TOKENS_FILE"),
                        help="the token file (default: $TOKENS_FILE)")
    options = parser.parse_args(argv)
    if not options.file:
        parser.error("--file (or TOKENS_FILE) names the token file")
    token = secrets.token_urlsafe(32)
    entry: dict[str, Any] = {
        "name": options.name, "sha256": digest(token),
        "queues": [q.strip() for q in options.queues.split(",") if q.strip()],
        "rights": [r.strip() for r in options.rights.split(",") if r.strip()],
    }
    if options.rate:
        per_second, _, burst = options.rate.partition("/")
        try:
            entry["rate"] = {"per_second": float(per_second), "burst": int(burst)}
        except ValueError:
            parser.error("--rate must be PER_SECOND/BURST, e.g. 50/100")
    try:
        _entry(entry, 0)
        if os.path.exists(options.file) and any(
                p.name == options.name for p in parse_token_file(options.file).values()):
            parser.error(f"the token file already has a token named {options.name!r}")
    except ValueError as err:
        parser.error(str(err))
    _append(options.file, entry)
    print(token)
    print(f"(token {options.name!r} added to {options.file}; it is shown only this once)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "create":
        sys.exit("usage: python -m bullmq_proxy.tokens create NAME --queues ... --rights ...")
    sys.exit(create(sys.argv[2:]))
