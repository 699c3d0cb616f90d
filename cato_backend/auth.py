"""Bearer tokens mapped to tenants: the auth file, its tokens' hashes, and the lookup.

The auth file (YAML) holds tenants, the SHA-256 hashes of their tokens and optional
per-tenant limits, never a token:

    tenants:
      team-a:
        limits: {max_in_flight: 8, rate_per_s: 5, burst: 10}   # optional
        tokens:
          - {id: 3f2a9c1e, sha256: <64 hex digits>, created: "2026-11-21T10:00:00Z"}

`cato-backend token new --tenant T --file F` adds a token and prints it once.

Why plain SHA-256 and not a salted slow hash (bcrypt, scrypt, argon2): those protect
low-entropy secrets (passwords) against guessing from a stolen hash. Our tokens are 32
random bytes (256 bits) from `secrets`: nobody can enumerate them, however fast the hash,
and a precomputed table cannot exist, so salt and slowness add nothing. A slow hash would
instead cost tens of milliseconds of CPU on EVERY request (a denial-of-service lever on a
2-core backend) and forbid the O(1) lookup by hash. This is what GitHub and PyPI do for API
tokens. The lookup is by the digest of the presented token (its timing tells an attacker
nothing about any stored token: that would need a SHA-256 preimage), and the match is
confirmed with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .config import TenantLimits

ANONYMOUS = "anonymous"  # the tenant of every request when auth is off
TOKEN_PREFIX = "cato_"  # recognisable in leaked-secret scans
TOKEN_BYTES = 32

TenantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenEntry(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8,64}$")]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    created: str | None = None
    note: str | None = None


class TenantEntry(_Strict):
    tokens: list[TokenEntry] = Field(default_factory=list)
    limits: TenantLimits = Field(default_factory=TenantLimits)


class AuthFile(_Strict):
    tenants: dict[TenantName, TenantEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AuthFile:
        if ANONYMOUS in self.tenants:
            raise ValueError(f"{ANONYMOUS!r} is reserved for unauthenticated requests")
        seen: set[str] = set()
        for name, tenant in self.tenants.items():
            for t in tenant.tokens:
                if t.sha256 in seen:
                    raise ValueError(f"tenant {name}: a token hash appears twice")
                seen.add(t.sha256)
        return self


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def load_auth_file(path: str | Path) -> AuthFile:
    """Parse and validate an auth file (a missing or empty file has no tenants)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"auth file {p} does not exist (create it with "
                                f"`cato-backend token new --tenant NAME --file {p}`)")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping with `tenants:`")
    return AuthFile.model_validate(data)


def _write_auth_file(path: Path, auth: AuthFile) -> None:
    """Atomically, readable by the owner only (hashes are not secrets, but the file says
    who may use the service and with which limits)."""
    text = ("# cato-backend auth file: SHA-256 hashes of bearer tokens (never the tokens).\n"
            "# Add one with `cato-backend token new --tenant NAME --file THIS_FILE`.\n"
            + yaml.safe_dump(auth.model_dump(mode="json", exclude_none=True), sort_keys=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_token(path: str | Path, tenant: str, note: str | None = None) -> tuple[str, TokenEntry]:
    """Add a new token for `tenant` (created if new) to the auth file (created if missing).
    Returns the token, the only time it exists outside the caller, and its entry."""
    p = Path(path)
    auth = load_auth_file(p) if p.exists() else AuthFile()
    token = new_token()
    digest = hash_token(token)
    entry = TokenEntry(id=digest[:8], sha256=digest, note=note,
                       created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    data = auth.model_dump(mode="json")
    data["tenants"].setdefault(tenant, {"tokens": []})["tokens"].append(entry.model_dump())
    auth = AuthFile.model_validate(data)  # validates the tenant name too
    _write_auth_file(p, auth)
    return token, entry


def revoke_token(path: str | Path, token_id: str) -> list[str]:
    """Remove the tokens whose id starts with `token_id`; returns their tenants."""
    p = Path(path)
    auth = load_auth_file(p)
    removed: list[str] = []
    for name, tenant in auth.tenants.items():
        keep = [t for t in tenant.tokens if not t.id.startswith(token_id)]
        removed += [name] * (len(tenant.tokens) - len(keep))
        tenant.tokens = keep
    if removed:
        _write_auth_file(p, auth)
    return removed


class TokenStore:
    """Who a bearer token belongs to. Reloads its file when it changes (checked at most
    every `reload_every_s`), so `token new` / `token revoke` take effect without a restart;
    a file that no longer parses is reported and the previous tokens stay."""

    def __init__(self, path: str | Path, reload_every_s: float = 2.0, log=None) -> None:
        self.path = Path(path)
        self.reload_every_s = reload_every_s
        self.log = log or (lambda msg: None)
        self._checked = time.monotonic()
        self._mtime = self._stat()
        self._set(load_auth_file(self.path))

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def _set(self, auth: AuthFile) -> None:
        self.auth = auth
        self._by_hash = {t.sha256: name for name, tenant in auth.tenants.items()
                         for t in tenant.tokens}

    def maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_every_s:
            return
        self._checked = now
        mtime = self._stat()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self._set(load_auth_file(self.path))
        except (OSError, ValueError) as e:
            self.log(f"cato-backend: auth file {self.path} not reloaded, keeping the previous "
                     f"tokens: {e}")
            return
        self.log(f"cato-backend: auth file {self.path} reloaded "
                 f"({len(self._by_hash)} tokens, {len(self.auth.tenants)} tenants)")

    def tenant_of(self, token: str) -> str | None:
        digest = hash_token(token)
        tenant = self._by_hash.get(digest)
        if tenant is None:
            return None
        stored = next(t.sha256 for t in self.auth.tenants[tenant].tokens if t.sha256 == digest)
        return tenant if hmac.compare_digest(stored, digest) else None

    def tenants(self) -> list[str]:
        return list(self.auth.tenants)

    def limits_of(self, tenant: str) -> TenantLimits | None:
        entry = self.auth.tenants.get(tenant)
        return entry.limits if entry is not None else None
