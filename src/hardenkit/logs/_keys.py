"""Which field names hold secrets: normalisation and the built-in vocabulary.

A name is folded to lowercase words (``clientSecret``, ``client-secret``, ``CLIENT_SECRET``
all become ``client secret``), then matched two ways: *root terms* that are specific
enough to match anywhere in the joined name (``token`` in ``access_token`` and
``x-amz-security-token``), and short *words* that only match a whole word (``auth``,
``pin``, ``ssn``), because as substrings they would match ``author``, ``spinner`` or
``classname``. Words that merely contain a term (``tokenizer``, ``secretary``) and names
that describe a secret rather than hold it (``password_changed_at``, ``salt_rounds``)
are told apart; a name spelled with lookalike letters (a Cyrillic ``a`` in ``password``)
is read as the name it imitates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "DEFAULT_ALLOWED_KEYS",
    "KeyClassifier",
    "normalise_key",
]

_CAMEL_LOWER_UPPER = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# Specific enough to match anywhere in the name once separators are removed.
_ROOT_TERMS = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "clientkey",
    "credential",
    "session",
    "sessid",
    "cookie",
    "authorization",
    "bearer",
    "cardnumber",
    "creditcard",
    "cardno",
    "securitycode",
    "connectionstring",
    # A webhook or request signature (GitHub's x-hub-signature-256, x-signature): with
    # the logged body it is a delivery anyone can replay where ids are not deduplicated.
    "signature",
    # An HMAC of a request (x-hmac-sha256, hmacDigest): the same, whatever digest word
    # follows it ("sha256" alone would call the value a hash and keep it).
    "hmac",
    # OAuth PKCE's code_verifier: whoever holds it with the code redeems the code.
    "codeverifier",
)

# Too short or too common to match inside other words; matched as whole words only.
_WHOLE_WORDS = frozenset(
    {"auth", "pwd", "pass", "ssn", "cvv", "cvv2", "cvc", "pin", "otp", "jwt", "csrf", "xsrf", "dsn"}
    | {"sig"}
    | {"pw", "psw", "pword", "userpass", "cred", "creds", "salt"}
    | {"appkey", "hmackey", "licensekey", "privkey", "authkey"}
    # Redis's (and Valkey's) password directives: CONFIG SET requirepass <password>.
    | {"requirepass", "masterauth", "primaryauth"}
)
# "key" after one of these words names a secret ("app_key", "hmacKey", "license-key");
# joined into one word they would match inside others ("whatsappkeyboard").
_KEY_QUALIFIERS = frozenset({"app", "hmac", "license", "priv", "private", "signing"})
# Words that contain a root term but mean something else: removed before matching, so
# "tokenizer" and "secretary" hold nothing while "secretary_password" still does.
_FALSE_FRIENDS = re.compile("tokeni[sz]|secretar")
# A last word that says the value is about the secret, not the secret: when, how long,
# how many ("password_changed_at", "token_ttl", "salt_rounds").
_METADATA_WORDS = frozenset(
    {"at", "on", "date", "time", "timestamp", "expiry", "expires", "ttl", "age"}
    | {"count", "length", "len", "size", "bits", "rounds", "version"}
)
# Plurals that name a count as often as a collection ("tokens=123"): an integer under
# one is a number, anything else is redacted.
_COUNTABLE_WORDS = frozenset(
    {"tokens", "passwords", "secrets", "sessions", "cookies", "credentials", "keys"}
)
# Latin letters' lookalikes (Cyrillic, Greek) that NFKC leaves alone.
_LOOKALIKES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u04bb\u04cf\u051b\u051d\u0410\u0412"
    "\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u03b1\u03bf\u03c4\u03c5\u03bd\u03ba\u03c1\u03c7",
    "aeopcyxijsdhlqwABEKMHOPCTXaotuvkpx",
)

# Query parameters that carry capabilities even though the name says little: presigned
# URL signatures, Google's ``key=``, OAuth authorization codes.
_QUERY_EXTRA_NAMES = frozenset({"sig", "signature", "key", "code", "xamzsignature"})

DEFAULT_ALLOWED_KEYS: tuple[str, ...] = (
    "token_type",
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "token_count",
    "auth_mode",
    "auth_method",
    "auth_scheme",
    "auth_type",
)
"""Names that contain a root term but never hold a secret (their values are still scanned)."""

# Names that say their value is a digest ("sha256", "content_md5", "etag", "commit"):
# a long hex value under one is the hash it says it is, not a key.
_HASH_WORDS = frozenset(
    {"sha", "sha1", "sha224", "sha256", "sha384", "sha512", "md5", "hash", "digest"}
    | {"checksum", "etag", "commit", "blake2b", "blake3", "crc32"}
)

_CACHE_LIMIT = 4096


def normalise_key(name: str) -> tuple[str, ...]:
    """Return ``name`` as lowercase words, camelCase and separators folded.

    >>> normalise_key("X-Api-Key"), normalise_key("clientSecret"), normalise_key("APIKey")
    (('x', 'api', 'key'), ('client', 'secret'), ('api', 'key'))
    """
    if not name.isascii():
        name = unicodedata.normalize("NFKC", name).translate(_LOOKALIKES)
    spaced = _CAMEL_ACRONYM.sub(r"\1_\2", _CAMEL_LOWER_UPPER.sub(r"\1_\2", name))
    return tuple(word for word in _NON_ALNUM.split(spaced.lower()) if word)


class KeyClassifier:
    """Decides, with a bounded cache, whether a field name marks its value as secret.

    Args:
        extra_terms: More names to treat as secret, matched anywhere in the normalised
            name (``iban`` also matches ``payout_iban``).
        allowed: Normalised names that never count as secret by name (their values are
            still scanned by the value detectors).
    """

    def __init__(self, extra_terms: Iterable[str] = (), allowed: Iterable[str] = ()) -> None:
        extra = tuple("".join(normalise_key(term)) for term in extra_terms)
        self._terms = _ROOT_TERMS + tuple(term for term in extra if term)
        self._allowed = frozenset("".join(normalise_key(name)) for name in allowed)
        self._cache: dict[str, bool] = {}
        self._query_cache: dict[str, bool] = {}

    def is_sensitive(self, name: str) -> bool:
        """Return whether a field called ``name`` holds a secret."""
        try:
            return self._cache[name]
        except KeyError:
            verdict = self._classify(normalise_key(name))
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[name] = verdict
            return verdict

    def is_sensitive_parameter(self, name: str) -> bool:
        """Return whether a query or ``name=value`` parameter called ``name`` holds a secret."""
        try:
            return self._query_cache[name]
        except KeyError:
            words = normalise_key(name)
            verdict = "".join(words) in _QUERY_EXTRA_NAMES or self._classify(words)
            if len(self._query_cache) < _CACHE_LIMIT:
                self._query_cache[name] = verdict
            return verdict

    def names_a_count(self, name: str) -> bool:
        """Return whether ``name`` is a plural that may hold a count (``tokens``)."""
        words = normalise_key(name)
        return bool(words) and words[-1] in _COUNTABLE_WORDS

    def names_a_hash(self, name: str) -> bool:
        """Return whether ``name`` says its value is a digest (and is not a secret name)."""
        words = normalise_key(name)
        return not self._classify(words) and any(word in _HASH_WORDS for word in words)

    def _classify(self, words: tuple[str, ...]) -> bool:
        joined = "".join(words)
        if not joined or joined in self._allowed:
            return False
        if len(words) > 1 and words[-1] in _METADATA_WORDS:
            return False
        if any(word in _WHOLE_WORDS for word in words):
            return True
        if any(
            word in ("key", "keys") and index and words[index - 1] in _KEY_QUALIFIERS
            for index, word in enumerate(words)
        ):
            return True
        joined = _FALSE_FRIENDS.sub("", joined)
        return any(term in joined for term in self._terms)
