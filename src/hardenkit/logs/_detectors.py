"""Value detectors: find secrets inside free text, whatever field they sit in.

The scan is a series of passes, each guarded by a cheap substring test so that an
ordinary value (a path, a user agent, a sentence) pays a handful of ``in`` checks and one
precompiled character-class search, never a long alternation tried at every position.
Passes run from the most structured (PEM blocks, URLs) to the most generic (long random
runs), and each replaces what it finds with a ``[REDACTED:kind]`` marker that later passes
do not match again.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Iterable
from urllib.parse import unquote

from hardenkit.logs._argv import redact_argv_reprs
from hardenkit.logs._assignments import AssignmentScanner
from hardenkit.logs._keys import KeyClassifier

__all__ = [
    "HEX_OR_TIMESTAMP",
    "PASSTHROUGH_SHAPE",
    "TextScanner",
    "luhn_valid",
    "marker",
]

_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r".*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Userinfo runs to the last '@' before the host: a password may hold '@' (and '?' or '#',
# accepted when a ':' comes first, as in "user:pa#ss@host"). After "user:" it may hold
# '/' too, unless it is a port ("host:8080/path/a@b"), and a few spaces when no '@'
# comes before them ("user:pa ss@host").
_URL_USERINFO = re.compile(
    r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)"
    r"((?:[^\s/@:\"'<>]*:(?![0-9]{1,5}(?:[/?#\s]|\Z))[^\s\"'<>]*"
    r"|[^\s/@:\"'<>]*:[^\s@\"'<>]*(?:[ \t][^\s@\"'<>]+){1,4}"
    r"|[^/\s\"'<>]+))@"
)
# Go's MySQL driver: "user:password@tcp(host:3306)/db", to the last '@' before the protocol.
_GO_DSN = re.compile(r"(?<![\w/])([^\s:@/\"'<>(]+):[^\s\"'<>]*@(?=(?:tcp6?|udp|unix)\()")
_SLACK_WEBHOOK = re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[\w/-]+")
# Other webhook URLs whose path is the credential: Discord, Zapier, Microsoft Teams.
_WEBHOOK = re.compile(
    r"https://(?:(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks"
    r"|hooks\.zapier\.com/hooks/catch"
    r"|[\w-]+\.webhook\.office\.com/webhookb2)/[\w@/-]+"
)
# A percent-encoded text ("state=%7B%22token%22%3A..."): scanned decoded as well.
_PERCENT_ESCAPE = re.compile(r"%(?:2[0-9A-Fa-f]|3[A-Fa-f]|5[BDbd]|7[BDbd])")
# Password hashes in crypt(3) notation (htpasswd, /etc/shadow, bcrypt, argon2): a
# dictionary attack away from the password.
_CRYPT_HASH = re.compile(
    r"\$(?:apr1|1|5|6|2[abxy]|y|gy|7|argon2(?:id|i|d)|scrypt)\$[./A-Za-z0-9$=,+]{8,}"
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){1,4}")
_DOTTED_VENDOR = re.compile(
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"  # SendGrid
    r"|\bya29\.[A-Za-z0-9_-]{20,}"  # Google OAuth access token
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=:-]{8,})")
_HEADER_LINE = re.compile(
    r"(?im)^[ \t]*(?P<name>authorization|proxy-authorization|cookie|set-cookie|x-[a-z0-9-]+)"
    r"[ \t]*:[ \t]*(?P<value>[^\r\n]+)"
)
# Long runs of token characters: every vendor key and every random blob is one.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_+/-]{16,}={0,2}")
# A run of digits, spaces and dashes (a plain character-class repeat, the fastest form for
# the regex engine); the callback looks for a card among its digit groups (a card may
# follow an unrelated number: "order 12 4111 1111 1111 1111").
_DIGIT_RUN = re.compile(r"[0-9][0-9 .-]{12,}")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# A hex run right after a label that names it a digest or an id: "sha256:ab12...",
# "etag=...", "request_id=...".
_HASH_LABEL = re.compile(
    r"(?i)(?:sha1|sha224|sha256|sha384|sha512|md5|hash|digest|checksum|etag|commit"
    r"|(?:request|trace|span|correlation)[_-]?id)"
    r"[\"']?[ \t]*[:=][ \t]*[\"']?\Z"
)
_DOTTED_NUMBER = re.compile(r"(?:[0-9]{1,12}[.:]+)*[0-9]{1,12}")
# Random secrets drawn from letters, digits and symbols (Django's SECRET_KEY: 50 of
# "a-z0-9!@#$%^&*(-_=+)"): a run with no space, no path or URL punctuation.
_SYMBOL_RUN = re.compile(r"[A-Za-z0-9!@#$%^&*()_+=~-]{32,}")
_RARE_SYMBOLS = frozenset("!@#$%^&*()~")
_WORD = re.compile(r"[A-Za-z]{4,}")
# A label in front of a shorter hex run: "secret 3f9a...", "token: '3f9a...'".
_NAME_BEFORE = re.compile(r"([^\W\d][\w.-]{0,63})[\"']?[ \t]*[:=]?[ \t]*[\"']?\Z")
_SHORT_HEX_LENGTH = 16
_LOWERCASE_PATH = re.compile(r"[a-z0-9_+-]{0,15}(?:/[a-z0-9_+-]{0,15})+")
_PADDED_BASE64 = re.compile(r"[A-Za-z0-9+/]{22,}={1,2}")

_VENDOR_PREFIXES = (
    "ghp_",  # GitHub personal access token
    "gho_",  # GitHub OAuth
    "ghu_",  # GitHub user-to-server
    "ghs_",  # GitHub server-to-server
    "ghr_",  # GitHub refresh
    "github_pat_",  # GitHub fine-grained PAT
    "glpat-",  # GitLab personal access token
    "gldt-",  # GitLab deploy token
    "glrt-",  # GitLab runner token
    "glptt-",  # GitLab pipeline trigger
    "glcbt-",  # GitLab CI build token
    "glft-",  # GitLab feed token
    "glsoat-",  # GitLab SCIM OAuth
    "gloas-",  # GitLab OAuth app secret
    "GR1348941",  # GitLab runner registration
    "xoxb-",  # Slack bot
    "xoxp-",  # Slack user
    "xoxa-",  # Slack app
    "xoxo-",
    "xoxr-",  # Slack refresh
    "xoxs-",
    "xoxe-",
    "xapp-",  # Slack app-level
    "sk_live_",  # Stripe secret
    "sk_test_",
    "rk_live_",  # Stripe restricted
    "rk_test_",
    "whsec_",  # Stripe webhook secret
    "AIza",  # Google API key
    "GOCSPX-",  # Google OAuth client secret
    "sk-",  # OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-)
    "shpat_",  # Shopify access token
    "shpss_",  # Shopify shared secret
    "shpca_",  # Shopify custom app
    "shppa_",  # Shopify private app
    "npm_",  # npm
    "pypi-",  # PyPI
    "SG.",  # SendGrid (dotted; also handled by the dotted pass)
    "eyJ",  # a JWT fragment (base64url of '{"')
)
_BASE64_PEM = "LS0tLS1CRUdJTi"  # base64 of "-----BEGIN"
_AWS_PREFIXES = frozenset(
    {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"}
)
_AWS_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_TWILIO_KEY = re.compile(r"SK[0-9a-fA-F]{32}")
# Keys that are hex with a vendor's prefix or suffix: Databricks "dapi<32 hex>" (and its
# "-2" variant), Mailchimp "<32 hex>-us6"; Stripe's client secrets "pi_..._secret_...".
_HEX_VENDOR = re.compile(r"dapi[0-9a-f]{32}(?:-[0-9]+)?|[0-9a-f]{32}-us[0-9]{1,2}")
_STRIPE_CLIENT_SECRET = re.compile(r"(?:pi|seti|src)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+")
# Stripe object ids: public references (a payment, a customer, a charge), not secrets.
_STRIPE_OBJECT_ID = re.compile(
    r"(?:pi|ch|cus|pm|in|ii|sub|si|evt|txn|re|po|tr|py|acct|price|prod|seti|src|card|ba"
    r"|cs_live|cs_test|plink|il|fee|prv|du|dp|iv)_[A-Za-z0-9]{8,32}"
)

# What hardenkit, structlog and Sentry write under pass-through names (ids, timestamps,
# levels, logger names, addresses), and no JWT or vendor key: one precompiled check.
# The commonest values, hex ids and ISO timestamps, have a quicker test of their own: a
# string made of these characters only holds no JWT and no vendor or AWS key (each has
# a letter outside a-f).
HEX_OR_TIMESTAMP = re.compile(r"[0-9a-fA-F:.TZ+-]*")
PASSTHROUGH_SHAPE = re.compile(
    "(?!"
    + "|".join(re.escape(prefix) for prefix in (*_VENDOR_PREFIXES, *sorted(_AWS_PREFIXES)))
    + r"|SK[0-9a-fA-F]{32}\Z|.*eyJ)[A-Za-z0-9._:+@-]{0,128}"
)

_MIN_RANDOM_LENGTH = 24
# A ULID minted between 2004 and 2039: 48-bit milliseconds, then 80 random bits, in
# Crockford base32. An id, however random its tail looks.
_ULID = re.compile(r"01[0-9A-HJKMNP-TV-Z]{24}")
_MIN_HEX_LENGTH = 32
_SEPARATORS = re.compile(r"[-_]+")
# Share of the maximum entropy reachable at a string's length and alphabet; random blobs
# score about 0.9, identifiers, paths and words about 0.75 (tests/logs/test_detectors.py).
_RANDOMNESS_THRESHOLD = 0.8


def marker(kind: str) -> str:
    """Return the placeholder that replaces a secret of ``kind``."""
    return f"[REDACTED:{kind}]"


_REDACTED = "[REDACTED]"


def luhn_valid(digits: str) -> bool:
    """Return whether the digit string passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _plausible_card(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    # Issuer ranges: 3 (Amex, JCB, Diners), 4 (Visa), 5 (Mastercard, Maestro), 6
    # (Discover, UnionPay), 2221-2720 (Mastercard 2-series). Epoch milliseconds start with 1.
    first = digits[0]
    if first not in "3456" and not (first == "2" and 2221 <= int(digits[:4]) <= 2720):
        return False
    return luhn_valid(digits)


def _randomness(text: str) -> float:
    """Shannon entropy as a share of the most a string of this length and alphabet can have.

    Random blobs score about 0.9 whatever their alphabet (base64, base36, hex); words,
    paths and identifiers about 0.75.
    """
    length = len(text)
    alphabet = (
        26 * any(char.islower() for char in text)
        + 26 * any(char.isupper() for char in text)
        + 10 * any(char.isdigit() for char in text)
        + 4 * any(char in "+/-_" for char in text)
    )
    counts = Counter(text).values()
    entropy = -sum(count / length * math.log2(count / length) for count in counts)
    return entropy / math.log2(min(length, max(alphabet, 2)))


def _looks_like_credential(token: str) -> bool:
    """Whether a word after ``Bearer``/``Basic`` is a credential rather than English."""
    if "=" in token.rstrip("="):
        # "token_type=Bearer expires_in=3600": the next pair, not a credential (base64
        # pads only at the end). The pair scanner judges it by its name.
        return False
    if any(not char.isalpha() for char in token):
        return True
    return any(char.isupper() for char in token[1:])


def _basic_credentials(token: str) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


class TextScanner:
    """Replaces every secret the detectors recognise inside a string.

    Args:
        keys: Decides which ``name=value`` / ``"name": value`` pairs hold secrets.
        allow_patterns: Regular expressions; a long random-looking run that fully matches
            one is left alone (for example ``[0-9a-f]{32}`` for MD5 hashes you log).
            Vendor-prefixed keys are always redacted.
        random_threshold: Minimum share of the maximum entropy for a long run to count
            as random.
    """

    def __init__(
        self,
        keys: KeyClassifier,
        allow_patterns: Iterable[re.Pattern[str]] = (),
        random_threshold: float = _RANDOMNESS_THRESHOLD,
    ) -> None:
        self._keys = keys
        self._assignments = AssignmentScanner(keys)
        self._allowed = tuple(allow_patterns)
        self._random_threshold = random_threshold

    def scan(self, text: str) -> str:
        """Return ``text`` with every detected secret replaced by a marker."""
        scanned = self._scan(text)
        if "%" in scanned and _PERCENT_ESCAPE.search(scanned) is not None:
            # What hides behind percent-encoding ("state=%7B%22token%22%3A...") is judged
            # decoded too, after the encoded text was scanned as it is (decoding a "%20"
            # inside a password would split it); when decoding reveals a secret, the
            # decoded, redacted text is what gets logged.
            decoded = unquote(scanned)
            redacted = self._scan(decoded)
            if redacted != decoded:
                return redacted
        return scanned

    def _scan(self, text: str) -> str:  # noqa: PLR0912 - one guarded pass per detector
        if (
            "0" <= text[:1] <= "9"
            and _DOTTED_NUMBER.fullmatch(text) is not None
            and len(text) - text.count(".") - text.count(":") < 13
        ):
            # Addresses, versions, times ("203.0.113.9:5000", "1.2.3", "12:30:45"): fewer
            # than 13 digits, so not even a card number fits ("4111.1111.1111.1111" does).
            return text
        if _LOWERCASE_PATH.fullmatch(text):
            # The commonest long value ("/api/v1/orders/42/items"): only a card number
            # could hide in it.
            if _DIGIT_RUN.search(text) is not None:
                return _DIGIT_RUN.sub(_card_replacement, text)
            return text
        if "PRIVATE KEY" in text:
            text = _PEM.sub(marker("private_key"), text)
        if "', " in text or '", ' in text:
            text = redact_argv_reprs(text, self.scan, self._keys.is_sensitive)
        if "://" in text:
            if "@" in text:
                text = _URL_USERINFO.sub(_userinfo_replacement, text)
            if "hooks.slack.com" in text:
                text = _SLACK_WEBHOOK.sub(marker("slack_webhook"), text)
            if "webhook" in text or "hooks.zapier" in text:
                text = _WEBHOOK.sub(marker("webhook"), text)
        if "@tcp(" in text or "@unix(" in text or "@tcp6(" in text or "@udp(" in text:
            text = _GO_DSN.sub(rf"\1:{_REDACTED}@", text)
        if "eyJ" in text:
            text = _JWT.sub(marker("jwt"), text)
        if "$" in text:
            text = _CRYPT_HASH.sub(marker("password_hash"), text)
        if "SG." in text or "ya29." in text:
            text = _DOTTED_VENDOR.sub(marker("api_key"), text)
        if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
            text = _AUTH_SCHEME.sub(_auth_scheme_replacement, text)
        # Named values, command lines, DSNs: guarded pass by pass inside.
        text = self._assignments.scan(text)
        if ": " in text:
            text = _HEADER_LINE.sub(self._header_replacement, text)
        if len(text) >= 32 and _SYMBOL_RUN.search(text) is not None:
            text = _SYMBOL_RUN.sub(self._symbol_replacement, text)
        if _TOKEN_RUN.search(text) is not None:
            text = _TOKEN_RUN.sub(self._token_replacement, text)
        if len(text) >= 13 and _DIGIT_RUN.search(text) is not None:
            text = _DIGIT_RUN.sub(_card_replacement, text)
        return text

    def _header_replacement(self, match: re.Match[str]) -> str:
        if not self._keys.is_sensitive(match["name"]):
            return match.group(0)
        start, _ = match.span("value")
        return match.group(0)[: start - match.start()] + _REDACTED

    def _symbol_replacement(self, match: re.Match[str]) -> str:
        run = match.group(0)
        if len(_RARE_SYMBOLS.intersection(run)) < 3 or not _mixed(run):
            return run
        # Code has words ("pg_advisory_xact_lock(hashtext($1))"); a random key has few.
        if sum(map(len, _WORD.findall(run))) * 2 >= len(run):
            return run
        if _randomness(run) < self._random_threshold:
            return run
        return marker("high_entropy")

    def _token_replacement(self, match: re.Match[str]) -> str:
        run = match.group(0)
        start = match.start()
        if (
            len(run) >= _MIN_HEX_LENGTH
            and _HEX.fullmatch(run) is not None
            and _HASH_LABEL.search(match.string, max(0, start - 24), start) is not None
        ):
            return run
        if _SHORT_HEX_LENGTH <= len(run) < _MIN_HEX_LENGTH and _HEX.fullmatch(run) is not None:
            # Too short to be judged alone, a secret when its label says so.
            name = _NAME_BEFORE.search(match.string, max(0, start - 72), start)
            if name is not None and self._keys.is_sensitive(name.group(1)):
                return marker("hex")
            return run
        if "/" in run and _LOWERCASE_PATH.fullmatch(run):
            # A lowercase path with short segments: random tokens have capitals.
            return run
        if "/" in run:
            return self._path_replacement(run)
        return self._judge(run)

    def _path_replacement(self, run: str) -> str:
        """``run`` with a ``/`` in it: a path, whose long segments may hold a token, or a key.

        "/api/v1/orders/42/items" is one run: when most segments are words or numbers it
        is a path, and only its long segments are judged. A padded base64 run is judged
        whole first: a key's "/" can cut it into short segments that read as a path
        ("/221/dQF7.../V5jW...=", the leak hunt), and a path of words still scores as one.
        """
        if _PADDED_BASE64.fullmatch(run) is not None and len(run) % 4 == 0:
            judged = self._judge(run)
            if judged != run:
                return judged
        segments = run.split("/")
        if _mostly_words(segments):
            return "/".join(
                self._judge(segment) if len(segment) >= 16 else segment for segment in segments
            )
        return self._judge(run)

    def _judge(self, run: str) -> str:
        kind = self._classify_run(run)
        return run if kind is None else marker(kind)

    def _classify_run(self, run: str) -> str | None:  # noqa: PLR0911 - one verdict per rule
        vendor = _vendor_kind(run)
        if vendor is not None:
            return vendor
        if len(run) < _MIN_RANDOM_LENGTH:
            return None
        core = run.rstrip("=")
        if self._allowed and any(pattern.fullmatch(core) for pattern in self._allowed):
            return None
        if len(core) == 26 and _ULID.fullmatch(core):
            return None
        if core[:2] in ("0x", "0X"):
            core = core[2:]  # a key or an address written as a number ("0x" + 64 hex)
        if _HEX.fullmatch(core):
            return "hex" if len(core) >= _MIN_HEX_LENGTH else None
        if _STRIPE_OBJECT_ID.fullmatch(core):
            return None
        if _UUID.search(core) and len(_UUID.sub("", core).strip("-_")) < _MIN_RANDOM_LENGTH:
            return None
        if core.count("-") + core.count("_") >= 2:
            parts = _SEPARATORS.split(core)
            if _mostly_words(parts):
                # An identifier ("req-2024-05-01-checkout-7f3a", a pod name): only its
                # long parts are judged.
                kinds = [self._classify_run(part) for part in parts if len(part) >= 16]
                return next((kind for kind in kinds if kind is not None), None)
        if _mixed(core) and _randomness(core) >= self._random_threshold:
            return "high_entropy"
        return None


def _vendor_kind(run: str) -> str | None:
    if run.startswith(_BASE64_PEM):
        # A PEM block in base64 (Kubernetes secret data, a kubeconfig): a certificate is
        # public, a private key is not.
        head = run[:96]
        try:
            decoded = base64.b64decode(head[: len(head) // 4 * 4])
        except (binascii.Error, ValueError):
            decoded = b""
        return "private_key" if b"PRIVATE KEY" in decoded else None
    if run.startswith(_VENDOR_PREFIXES):
        return "jwt" if run.startswith("eyJ") else "api_key"
    if len(run) >= 20 and run[:4] in _AWS_PREFIXES and all(c in _AWS_ID_CHARS for c in run[4:20]):
        return "aws_access_key_id"
    if _TWILIO_KEY.fullmatch(run) or _HEX_VENDOR.fullmatch(run):
        return "api_key"
    if "_secret_" in run and _STRIPE_CLIENT_SECRET.fullmatch(run):
        return "api_key"
    return None


def _word_like(part: str) -> bool:
    """Whether a path segment or identifier part reads as a word, a number or a version."""
    if not part or part.isdigit():
        return True
    if part.isalpha():
        # "orders", "Checkout", "EU"; random base64 parts mix case far more often.
        return len(part) >= 3 and (part.islower() or part[1:].islower() or part.isupper())
    return part[0] in "vV" and part[1:].isdigit()  # v1, V2


def _mostly_words(parts: list[str]) -> bool:
    return sum(map(_word_like, parts)) * 2 >= len(parts)


def _mixed(text: str) -> bool:
    """At least two of lowercase, uppercase and digits: random blobs always are."""
    classes = (
        any(char.islower() for char in text)
        + any(char.isupper() for char in text)
        + any(char.isdigit() for char in text)
    )
    return classes >= 2


def _userinfo_replacement(match: re.Match[str]) -> str:
    userinfo = match.group(2)
    query = min((userinfo.find(char) for char in "?#" if char in userinfo), default=-1)
    if query >= 0 and ":" not in userinfo[:query]:
        # "https://host?next=a@b": the '@' sits in the query, there is no userinfo.
        return match.group(0)
    return f"{match.group(1)}{_REDACTED}@"


def _auth_scheme_replacement(match: re.Match[str]) -> str:
    scheme, space, token = match.group(1), match.group(2), match.group(3)
    if scheme.lower() == "basic":
        secret = _basic_credentials(token) or _looks_like_credential(token)
    else:
        secret = _looks_like_credential(token)
    return f"{scheme}{space}{_REDACTED}" if secret else match.group(0)


def _card_replacement(match: re.Match[str]) -> str:
    run = match.group(0)
    groups = [group.span() for group in _DIGIT_GROUP.finditer(run)]
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            start, end = groups[last]
            digits += run[start:end]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _plausible_card(digits):
                redacted = f"[REDACTED:card:{digits[-4:]}]"
                rest = _card_replacement_in(run[groups[last][1] :])
                return run[: groups[first][0]] + redacted + rest
    return run


def _card_replacement_in(text: str) -> str:
    match = _DIGIT_RUN.search(text)
    return text if match is None else _DIGIT_RUN.sub(_card_replacement, text)
