"""Async JWKS client: the identity provider's signing keys, fetched rarely and safely.

- **https only.** Plain ``http`` is accepted for loopback hosts only, and only when
  ``allow_http_loopback=True`` (local identity providers, tests). Redirects are not
  followed, the body is capped, each fetch has a timeout.
- **Single flight.** Concurrent requests that need a refresh share one fetch.
- **Cooldown.** A refresh for an unknown ``kid`` happens at most once per
  ``refresh_cooldown`` seconds, so a flood of random ``kid`` values cannot turn into a
  flood of requests to the provider. A ``kid`` still unknown after a refresh is remembered
  (bounded) and refused without another fetch for ``negative_ttl`` seconds.
- **Stale while revalidate.** Once keys are loaded, a scheduled refresh (``cache_ttl``)
  runs in the background: no request waits for it, however slow the provider. A request
  waits only for the first load, or for a refresh caused by an unknown ``kid`` (bounded by
  the cooldown and the fetch timeout).
- **Stale keys on outage.** When a refresh fails, the keys already known keep serving.
- **Removal is honoured.** A successful refresh replaces the whole set: a key that left it
  is no longer trusted, and listeners (the verified-token cache) are told to flush.

Only ``kty`` RSA, EC and OKP keys meant for signatures are used; symmetric (``oct``) keys
in a JWKS are ignored, because HMAC must never share an allow-list with public keys.
``x5c``/``x5u`` members are never used: the key is the key, not a certificate chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from jwt import PyJWK

from hardenkit._ttlmap import TTLMap
from hardenkit.auth._jwks_url import check_jwks_url
from hardenkit.auth.algorithms import EC_CURVES, OKP_ALGORITHMS, RSA_ALGORITHMS
from hardenkit.auth.algorithms import allowed_algorithms as _allowed_algorithms
from hardenkit.auth.errors import KeysUnavailableError, TokenRejectedError
from hardenkit.auth.keys import MIN_RSA_BITS, VerificationKey, bind
from hardenkit.errors import ConfigurationError

if TYPE_CHECKING:
    import httpx

__all__ = ["JWKSClient", "check_jwks_url"]

_logger = structlog.get_logger("hardenkit.auth.jwks")

MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 100
MAX_KID_LENGTH = 256


_PRIVATE_OR_CHAIN_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "x5c", "x5u"})


def _usable_for_signatures(jwk: Any) -> bool:
    """Whether a JWK claims to be a signature verification key with a sane ``kid``."""
    if not isinstance(jwk, dict):
        return False
    kid = jwk.get("kid", "")
    if not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH:
        return False
    if jwk.get("use", "sig") != "sig":
        return False
    key_ops = jwk.get("key_ops")
    return key_ops is None or (isinstance(key_ops, list) and "verify" in key_ops)


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    keys: Mapping[str, VerificationKey]  # by algorithm


class JWKSClient:
    """Keys of a JWKS URL, cached, refreshed on schedule and on unknown ``kid``.

    Args:
        url: The JWKS URL (``https://``; ``http://`` only for loopback when allowed).
        algorithms: The allow-list (asymmetric algorithms only); empty means ``RS256``.
        allow_http_loopback: Accept ``http://`` for 127.0.0.0/8, ``::1`` and localhost.
        timeout: Seconds one fetch may take.
        cache_ttl: Seconds before keys are refreshed on schedule.
        refresh_cooldown: Seconds between two fetches caused by unknown ``kid`` values
            or after a failed fetch.
        negative_ttl: Seconds a ``kid`` missing after a refresh is refused without a fetch.
        negative_cache_size: Most unknown ``kid`` values remembered.
        transport: An ``httpx.AsyncBaseTransport`` to fetch through (tests, custom TLS).
        clock: Monotonic clock, replaceable in tests.

    Raises:
        ValueError: The URL or the allow-list is not safe.
        ConfigurationError: ``httpx`` is not installed (``pip install 'hardenkit[httpx]'``).
    """

    def __init__(
        self,
        url: str,
        *,
        algorithms: Iterable[str] = (),
        allow_http_loopback: bool = False,
        timeout: float = 5.0,
        cache_ttl: float = 600.0,
        refresh_cooldown: float = 30.0,
        negative_ttl: float = 60.0,
        negative_cache_size: int = 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url, allow_http_loopback=allow_http_loopback)
        self.algorithms = _allowed_algorithms("jwks", algorithms)
        if timeout <= 0 or cache_ttl <= 0 or refresh_cooldown < 0 or negative_ttl < 0:
            raise ValueError("timeout and cache_ttl must be positive, cooldowns not negative")
        if negative_cache_size < 0:
            raise ValueError("negative_cache_size must not be negative")
        try:
            import httpx  # noqa: PLC0415 - optional extra, needed only for JWKS
        except ImportError:  # pragma: no cover - httpx is installed in every test env
            raise ConfigurationError(
                "HARDENKIT_JWT_JWKS_URL needs httpx: pip install 'hardenkit[httpx]'"
            ) from None
        self._httpx = httpx
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.refresh_cooldown = refresh_cooldown
        self.negative_ttl = negative_ttl
        self.negative_cache_size = negative_cache_size
        self._transport = transport
        self._clock = clock
        self._entries: dict[str, _KeyEntry] | None = None
        self._fingerprint: bytes | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._inflight: asyncio.Task[bool] | None = None
        # Unknown kid -> True, alive for negative_ttl.
        self._unknown_kids: TTLMap[str, bool] = TTLMap(negative_cache_size, clock)
        self._listeners: list[Callable[[], None]] = []
        self.fetch_count = 0
        """Fetches attempted so far (successful or not); for tests and diagnostics."""

    @property
    def host(self) -> str:
        """The provider's host, for log lines (never the full URL)."""
        return urlsplit(self.url).hostname or ""

    @property
    def loaded(self) -> bool:
        """Whether a key set was ever fetched successfully."""
        return self._entries is not None

    @property
    def kids(self) -> frozenset[str]:
        """The ``kid`` values currently trusted."""
        return frozenset(self._entries or ())

    def on_keys_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a refresh brings a different key set."""
        self._listeners.append(listener)

    async def key_for(self, kid: str | None, algorithm: str) -> VerificationKey:
        """Return the key for ``kid`` and ``algorithm``.

        Raises:
            TokenRejectedError: ``unknown_kid`` or ``alg_not_allowed`` for this key.
            KeysUnavailableError: No key set was ever loaded and the provider does not answer.
        """
        now = self._clock()
        if self._entries is None:
            await self._refresh(now, scheduled=True)
        elif now - self._fetched_at >= self.cache_ttl:
            self._revalidate(now)  # in the background: the cached keys answer meanwhile
        entries = self._entries
        if entries is None:
            # Asking again before the cooldown ends gets the same answer: say when it won't.
            next_fetch = self._attempted_at + self.refresh_cooldown - self._clock()
            raise KeysUnavailableError(retry_after=max(next_fetch, 0.0))
        entry = self._lookup(entries, kid)
        if entry is None and kid is not None and self._may_refresh_for(kid, now):
            await self._refresh(now, scheduled=False)
            entries = self._entries or {}
            entry = self._lookup(entries, kid)
            if entry is None:
                self._remember_unknown(kid)
        if entry is None:
            raise TokenRejectedError("unknown_kid")
        key = entry.keys.get(algorithm)
        if key is None:
            raise TokenRejectedError("alg_not_allowed")
        return key

    async def refresh(self) -> bool:
        """Fetch the key set now (single flight); return whether it succeeded."""
        return await self._refresh(self._clock(), scheduled=False, forced=True)

    @staticmethod
    def _lookup(entries: Mapping[str, _KeyEntry], kid: str | None) -> _KeyEntry | None:
        if kid is not None:
            return entries.get(kid)
        # A token without ``kid`` is matched only when the set leaves no choice.
        if len(entries) == 1:
            return next(iter(entries.values()))
        return None

    def _may_refresh_for(self, kid: str, now: float) -> bool:
        if self._inflight is not None and not self._inflight.done():
            return True
        if self._unknown_kids.get(kid):
            return False
        return now - self._attempted_at >= self.refresh_cooldown

    def _remember_unknown(self, kid: str) -> None:
        self._unknown_kids.put(kid, True, self.negative_ttl)

    def _revalidate(self, now: float) -> None:
        """Start a scheduled refresh in the background (single flight, cooldown)."""
        task = self._inflight
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            return
        if now - self._attempted_at < self.refresh_cooldown:
            return
        self._attempted_at = now
        self._inflight = asyncio.get_running_loop().create_task(self._fetch_and_install(True))

    async def _refresh(self, now: float, *, scheduled: bool, forced: bool = False) -> bool:
        task = self._inflight
        if task is not None and not task.done():
            if task.get_loop() is asyncio.get_running_loop():
                return await asyncio.shield(task)
            self._inflight = None  # a fetch of another (finished) event loop
        if not forced and now - self._attempted_at < self.refresh_cooldown:
            # A failed or recent fetch: serve what we have, ask the provider later.
            return False
        self._attempted_at = now
        task = asyncio.get_running_loop().create_task(self._fetch_and_install(scheduled))
        self._inflight = task
        # Shielded: a client that disconnects must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    async def _fetch_and_install(self, scheduled: bool) -> bool:
        self.fetch_count += 1
        try:
            document = await self._fetch()
            entries = self._parse(document)
        except Exception as error:  # noqa: BLE001 - any failure keeps the current keys
            _logger.warning(
                "jwks_refresh_failed",
                host=self.host,
                error=type(error).__name__,
                detail=str(error)[:200] if isinstance(error, ValueError) else None,
                serving_stale_keys=self._entries is not None,
                stale_key_count=len(self._entries or ()),
            )
            return False
        self._install(entries, document)
        _logger.debug("jwks_refreshed", host=self.host, keys=len(entries), scheduled=scheduled)
        return True

    def _install(self, entries: dict[str, _KeyEntry], document: bytes) -> None:
        fingerprint = hashlib.sha256(document).digest()
        changed = self._fingerprint is not None and fingerprint != self._fingerprint
        removed = self.kids - frozenset(entries)
        self._entries = entries
        self._fingerprint = fingerprint
        self._fetched_at = self._clock()
        for kid in entries:
            self._unknown_kids.pop(kid)
        if changed:
            _logger.info(
                "jwks_keys_changed", host=self.host, keys=len(entries), removed=sorted(removed)
            )
            for listener in self._listeners:
                listener()

    async def _fetch(self) -> bytes:
        httpx = self._httpx
        async with (
            asyncio.timeout(self.timeout),
            httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                transport=self._transport,
                headers={"accept": "application/json"},
            ) as client,
            client.stream("GET", self.url) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("key set larger than allowed")
            return bytes(body)

    def _parse(self, document: bytes) -> dict[str, _KeyEntry]:
        try:
            data = json.loads(document)
        except (ValueError, RecursionError):
            raise ValueError("not JSON") from None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise ValueError("no `keys` list")
        entries: dict[str, _KeyEntry] = {}
        for jwk in keys[:MAX_KEYS]:
            parsed = self._parse_key(jwk)
            if parsed is not None:
                kid, entry = parsed
                entries[kid] = entry
        if not entries:
            raise ValueError("no usable signing key for the allowed algorithms")
        return entries

    def _parse_key(self, jwk: Any) -> tuple[str, _KeyEntry] | None:
        if not _usable_for_signatures(jwk):
            return None
        keys: dict[str, VerificationKey] = {}
        public = {k: v for k, v in jwk.items() if k not in _PRIVATE_OR_CHAIN_MEMBERS}
        for name in self._fitting_algorithms(jwk):
            if name not in self.algorithms:
                continue
            try:
                key = PyJWK(public, algorithm=name).key
            except Exception:  # noqa: BLE001 - one broken key must not hide the others
                return None
            if jwk["kty"] == "RSA" and getattr(key, "key_size", 0) < MIN_RSA_BITS:
                return None
            keys[name] = bind(name, key)
        if not keys:
            return None
        return jwk.get("kid", ""), _KeyEntry(keys)

    @staticmethod
    def _fitting_algorithms(jwk: dict[str, Any]) -> list[str]:
        kty = jwk.get("kty")
        declared = jwk.get("alg")
        if kty == "RSA":
            family: Iterable[str] = RSA_ALGORITHMS
        elif kty == "EC":
            family = [name for name, curve in EC_CURVES.items() if curve == jwk.get("crv")]
        elif kty == "OKP" and jwk.get("crv") in {"Ed25519", "Ed448"}:
            family = OKP_ALGORITHMS
        else:
            return []  # oct (HMAC) keys and anything unknown
        if declared is not None:
            return [declared] if declared in family else []
        return sorted(family)
