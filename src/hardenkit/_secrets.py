"""How strong a secret is, judged the same way for every secret hardenkit is given.

JWT secrets, webhook secrets (as text for Stripe-style, as key bytes for Standard
Webhooks), message signing seeds and API keys (by hash: only hashes are configured) go
through :func:`secret_weakness`, which refuses:

- a published secret: a placeholder from documentation (jwt.io's ``your-256-bit-secret``,
  Stripe's and Standard Webhooks' examples), a demo or example value of the reference app
  and the docs, or any secret that contains one (doubling a placeholder does not make it
  secret), compared with case and separators ignored (``YOUR_256 BIT-SECRET``); a long
  one also one edit away (a changed character);
- the hex digest (md5, sha1, sha256, sha512) of a common password (``password``,
  ``123456``, ``changeme``...); hex or base64 that decodes to printable text which is
  itself weak;
- a secret too short to hold 128 bits;
- a secret whose unpredictable part is under 128 bits: each character counts as many
  bits as its character classes allow (lower, upper, digits, symbols; 8 bits for binary
  keys), except characters a guesser gets for free: a repeat or a neighbour of the one
  before (``aaaa``, ``abcd``, ``9876``), the next step of a progression (``aceg``),
  characters continuing a run of four already seen earlier in the secret, and keyboard
  walks (``1qaz2wsx``, ``qazwsx``); runs of letters that read as English (judged by a
  letter-pair table) count 2 bits a letter, as English text does.

Random secrets pass with a wide margin (32 random bytes as hex, base64 or urlsafe text
score about 160-330 bits: in 50,000 draws of each form the lowest was 162); the judgement
never says what the secret is.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import string
from typing import Final

from hardenkit._published import (
    DEMO_AGENT_PRIVATE_KEY,
    DEMO_SERVICE_PRIVATE_KEY,
    PUBLISHED_WEBHOOK_KEYS,
    PUBLISHED_WEBHOOK_SECRETS,
)

__all__ = [
    "MIN_SECRET_BITS",
    "PUBLISHED_SECRETS",
    "estimated_bits",
    "published_api_key_hashes",
    "published_seed",
    "secret_weakness",
]

MIN_SECRET_BITS: Final = 128
_REPEAT_WINDOW = 4

# Secrets printed in documentation people copy from, and the reference app's demo values.
# Compared with separators (`-`, `_`, `.`, spaces) and case ignored; tests/test_secrets.py
# checks that every example secret in docs/ and examples/ is listed.
PUBLISHED_SECRETS: Final[tuple[str, ...]] = (
    # jwt.io's debugger (HS256/384/512 placeholders, old and new).
    "your-256-bit-secret",
    "your-384-bit-secret",
    "your-512-bit-secret",
    "a-string-secret-at-least-256-bits-long",
    "at-least-256-bits",
    # Tutorials and framework docs.
    "your-secret-key",
    "your-jwt-secret",
    "super-secret",
    "secret-key",
    "change-me",
    "change-this",
    "replace-me",
    "replace-with",
    "do-not-use",
    "insecure",
    "placeholder",
    "example",
    "demo",
    "lorem-ipsum",
    "the-quick-brown-fox",
    # The reference app's JWT secret (examples/reference_app/settings.py, docs/auth.md).
    "hardenkit-demo-jwt-secret-Qm8vT2xL5nR9wK3pZ7cY1hB4",
    # Stripe's documented test key and secret form, Standard Webhooks/demo secrets.
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec_test_secret",
    *PUBLISHED_WEBHOOK_SECRETS,
)
# Placeholder API keys from documentation and tutorials; configured as sha256 hashes.
_PUBLISHED_API_KEYS: Final = (
    "",
    "your-api-key",
    "api-key",
    "apikey",
    "changeme",
    "secret",
    "test",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's documented test key
    "hardenkit-demo-api-key",
    # The reference app's logging demo (examples/reference_app/README.md, docs/logging.md).
    "sk_live_51H8FAKEFAKEFAKE",
    "demo-key-9f8e7d6c5b4a",
)
# The most common passwords and words: their hex digests are refused as secrets, and their
# sha256 as API key hashes.
_COMMON_WORDS: Final = (
    "",
    "password",
    "password1",
    "passw0rd",
    "secret",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "admin",
    "root",
    "changeme",
    "qwerty",
    "letmein",
    "welcome",
    "test",
    "default",
    "iloveyou",
    "abc123",
    "monkey",
    "dragon",
    "hello",
)
_CLASSES: Final = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
)
_SEPARATORS: Final = re.compile(r"[-_.\s]+")
_LONG_PUBLISHED: Final = 16


def _normalised(text: str) -> str:
    """``text`` lower-cased without separators: `Your_256 bit-Secret` is `your256bitsecret`."""
    return _SEPARATORS.sub("", text.lower())


def _spelling(published: str) -> str:
    # Any separator (or none) between the words, any case.
    return r"[-_.\s]*".join(re.escape(part) for part in _SEPARATORS.split(published.lower()))


# Long placeholders count anywhere (and within one edit); short ones as whole words only
# (`my-demo-key`, not `xDeMoq` in random text).
_LONG_NORMALISED: Final = tuple(
    _normalised(secret)
    for secret in PUBLISHED_SECRETS
    if len(_normalised(secret)) >= _LONG_PUBLISHED
)
_SHORT_PATTERN: Final = re.compile(
    "|".join(
        rf"(?<![a-z0-9]){_spelling(secret)}(?![a-z0-9])"
        for secret in PUBLISHED_SECRETS
        if len(_normalised(secret)) < _LONG_PUBLISHED
    )
)
_DIGESTS: Final = frozenset(
    hashlib.new(algorithm, word.encode(), usedforsecurity=False).hexdigest()
    for word in _COMMON_WORDS
    for algorithm in ("md5", "sha1", "sha256", "sha512")
)
# QWERTY rows (shifted symbols map to their key; each row sits half a key right of the one
# above). Keyboard walks (`1qaz2wsx`, `zaq12wsx`, `qazwsxedc`) cost a guesser little.
_ROWS: Final = ("1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./")
_SHIFTED: Final = str.maketrans('!@#$%^&*()_+{}:"<>?', "1234567890-=[];',./")
_KEYS: Final = {
    key: (row, column) for row, keys in enumerate(_ROWS) for column, key in enumerate(keys)
}
# Neighbours in key coordinates: same row, the row above (same and next column), below.
_NEAR: Final = frozenset({(0, -1), (0, 1), (-1, 0), (-1, 1), (1, 0), (1, -1)})
_WALK_WINDOW: Final = 3


# English letter pairs: surprisal in bits of each letter after the one before (row: first
# letter a-z, column: second), minus one, capped at 9. Computed once from the English
# license texts in /usr/share/common-licenses (words run together, add-half smoothing).
_BIGRAM_BITS: Final = (
    "94349649486231949232555949",
    "39972999349179479556199929",
    "39591893495399189672399989",
    "34541566189666259643454959",
    "36324457499442446223654559",
    "38573497299667159241586939",
    "26561652399553459243475979",
    "29570899299877379663789969",
    "44254349999441269522849998",
    "36660666666666246666166666",
    "24492477297444369524494959",
    "26642689199266349744476939",
    "14561898299647239734487979",
    "36423539498666269721556939",
    "66446248699541639143245979",
    "29982996399289339174398929",
    "77777777777777777777077777",
    "26341667294636259433665959",
    "36461564298465249632385959",
    "36562691299566269344684949",
    "43345656499422659221796999",
    "29990999299999599999999999",
    "19793772199694169464965979",
    "36181684488868628881888838",
    "25445467387455149333674957",
    "15551555155545455545555555",
)
# A run of letters (through single separators) reads as words when its letters average at
# most this many bits under the pair table; random letters average about 6.6.
_WORDLIKE_BITS: Final = 4.5
_WORDLIKE_MIN_LETTERS: Final = 6
# What a guesser pays per letter of words (English text carries about 2 bits a letter),
# per separator and per case change inside them.
_WORD_LETTER_BITS: Final = 2.0
_WORD_MARK_BITS: Final = 1.0
_LETTER_RUN: Final = re.compile(r"[A-Za-z]+(?:[-_.\s][A-Za-z]+)*")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2}){8,}")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_MIN_DECODED: Final = 8


# Binary keys are compared as bytes: the text of each secret, and a Standard Webhooks
# secret's decoded key (how the webhook key and message seeds reach the judgement).
_PUBLISHED_BYTES: Final = frozenset(
    {secret.encode() for secret in PUBLISHED_SECRETS if len(secret) >= 16}
    | set(PUBLISHED_WEBHOOK_KEYS)
)
_PUBLISHED_SEEDS: Final = (DEMO_AGENT_PRIVATE_KEY, DEMO_SERVICE_PRIVATE_KEY)


def _api_key_spellings(key: str) -> set[str]:
    spellings = {key, key.lower(), key.upper()}
    return spellings | {
        spelling.replace(a, b) for spelling in spellings for a, b in (("-", "_"), ("_", "-"))
    }


def published_api_key_hashes() -> frozenset[str]:
    """Return the sha256 hex of each published placeholder API key and common password."""
    return frozenset(
        hashlib.sha256(spelling.encode()).hexdigest()
        for key in (*_PUBLISHED_API_KEYS, *_COMMON_WORDS)
        for spelling in _api_key_spellings(key)
    )


def _pool_bits(secret: str | bytes) -> float:
    if isinstance(secret, bytes):
        return 8.0
    pool = sum(size for members, size in _CLASSES if members.intersection(secret))
    # Only characters outside the ASCII classes: count them as symbols, never as more.
    return math.log2(pool or 33)


def _pair_bits(first: str, second: str) -> int:
    row = ord(first) - ord("a")
    return int(_BIGRAM_BITS[row][ord(second) - ord("a")]) + 1


def _word_runs(secret: str) -> tuple[set[int], float]:
    """Return the positions of runs that read as words, and the bits a guesser pays for them."""
    positions: set[int] = set()
    bits = 0.0
    for run in _LETTER_RUN.finditer(secret):
        letters = "".join(filter(str.isalpha, run.group())).lower()
        if len(letters) < _WORDLIKE_MIN_LETTERS:
            continue
        pairs = itertools.pairwise(letters)
        if sum(_pair_bits(a, b) for a, b in pairs) / (len(letters) - 1) > _WORDLIKE_BITS:
            continue
        text = run.group()
        marks = sum(not char.isalpha() for char in text) + sum(
            a.isupper() != b.isupper() for a, b in itertools.pairwise(text)
        )
        positions.update(range(run.start(), run.end()))
        bits += len(letters) * _WORD_LETTER_BITS + marks * _WORD_MARK_BITS
    return positions, bits


def _keyboard_walk(secret: str) -> set[int]:
    """Return the positions a keyboard walk gives away.

    A key is free when it is the second neighbour in a row (``qaz``: ``z``), or when the
    last three moves across the keyboard repeat moves made earlier (``qazwsx``: ``wsx``).
    """
    keys = [_KEYS.get(char.lower().translate(_SHIFTED)) for char in secret]
    moves: list[tuple[int, int] | None] = [None]
    for before, key in itertools.pairwise(keys):
        moves.append(
            None if before is None or key is None else (key[0] - before[0], key[1] - before[1])
        )
    free: set[int] = set()
    seen: set[tuple[tuple[int, int] | None, ...]] = set()
    for index in range(2, len(keys)):
        if moves[index] in _NEAR and moves[index - 1] in _NEAR:
            free.add(index)
        window = tuple(moves[max(0, index - _WALK_WINDOW + 1) : index + 1])
        if len(window) == _WALK_WINDOW and None not in window:
            if window in seen:
                free.add(index)
            seen.add(window)
    return free


def estimated_bits(secret: str | bytes) -> float:
    """Return the bits a guesser must find: unpredictable characters x bits per character.

    In ASCII text, runs of letters that read as English words count as English text does
    (about 2 bits a letter), and keyboard walks are free.
    """
    codes = list(secret.encode() if isinstance(secret, str) else secret)
    words: set[int] = set()
    walk: set[int] = set()
    word_bits = 0.0
    if isinstance(secret, str) and secret.isascii():
        words, word_bits = _word_runs(secret)
        walk = _keyboard_walk(secret)
    seen: set[tuple[int, ...]] = set()
    unpredictable = 0
    for index, code in enumerate(codes):
        step = code - codes[index - 1] if index else None
        previous_step = codes[index - 1] - codes[index - 2] if index > 1 else None
        window = tuple(codes[max(0, index - _REPEAT_WINDOW + 1) : index + 1])
        predictable = (
            index in words
            or (step is not None and abs(step) <= 1)
            or (step is not None and step == previous_step)
            or (len(window) == _REPEAT_WINDOW and window in seen)
            or index in walk
        )
        if len(window) == _REPEAT_WINDOW:
            seen.add(window)
        unpredictable += not predictable
    return unpredictable * _pool_bits(secret) + word_bits


def _within_one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            skip = index if len(a) < len(b) else index + 1
            return a[skip:] == b[index + 1 :]
    return True


def _published(secret: str) -> bool:
    if _SHORT_PATTERN.search(secret.lower()):
        return True
    normalised = _normalised(secret)
    return any(
        published in normalised or _within_one_edit(normalised, published)
        for published in _LONG_NORMALISED
    )


def _published_bytes(secret: bytes) -> bool:
    # One changed character of a base64 key changes at most two bytes.
    return any(
        len(secret) == len(published)
        and sum(a != b for a, b in zip(secret, published, strict=True)) <= 2
        for published in _PUBLISHED_BYTES
    )


def _decoded_text(secret: str) -> str | None:
    """Return the printable text a hex or base64 secret encodes, if it encodes text."""
    decoded: bytes | None = None
    if _HEX.fullmatch(secret):
        decoded = bytes.fromhex(secret)
    elif _BASE64.fullmatch(secret):
        padded = secret.rstrip("=") + "=" * (-len(secret.rstrip("=")) % 4)
        try:
            decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except ValueError:
            return None
    if decoded is None or len(decoded) < _MIN_DECODED:
        return None
    if all(0x20 <= byte < 0x7F for byte in decoded):
        return decoded.decode()
    return None


def _text_weakness(secret: str) -> str | None:
    if _published(secret):
        return "is, contains or is one edit from a published placeholder or sample secret"
    if secret.strip().lower() in _DIGESTS:
        return "is the hex digest of a common password, which anyone can compute"
    decoded = _decoded_text(secret)
    inner = None if decoded is None else secret_weakness(decoded)
    return None if inner is None else f"encodes text that {inner}"


def secret_weakness(secret: str | bytes) -> str | None:
    """Return why ``secret`` cannot protect anything in production, or ``None``.

    The reason never contains the secret or any part of it.
    """
    if isinstance(secret, str):
        weakness = _text_weakness(secret)
        if weakness is not None:
            return weakness
    elif _published_bytes(secret):
        return "is a published placeholder, sample or demo secret"
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size * _pool_bits(secret) < MIN_SECRET_BITS:
        return f"is too short to hold {MIN_SECRET_BITS} random bits"
    bits = estimated_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"is too regular to be random (about {bits:.0f} unpredictable bits, under "
            f"{MIN_SECRET_BITS}: words, keyboard walks, runs, sequences or repeats)"
        )
    return None


def published_seed(seed_text: str) -> bool:
    """Whether ``seed_text`` is one of the published demo signing seeds."""
    return seed_text.strip() in _PUBLISHED_SEEDS
