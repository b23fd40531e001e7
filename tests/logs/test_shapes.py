"""The shapes secrets take in real logs, redacted through every integration of the one engine.

Each shape is a line a careless handler writes; the secret in it must not reach structlog's
JSON output, a stdlib record (message, arguments, ``extra``), an exception's text or notes,
or a Sentry event.
"""

from __future__ import annotations

import base64
import enum
import io
import json
import logging
import random
import subprocess
from typing import Any, NamedTuple

import pytest
import structlog

from hardenkit.logs import RedactingLogFilter, Redactor, sentry_before_send

SECRET = "hunter2xyz"
KEY = "k-123456"
HEX32 = "3f9a1c0b7e6d5a4f2c1b0a9e8d7c6b5a"
DJANGO_KEY = "k#3@x!v8(z^m_2q$w0e+r&t*y5u6i7o9p-a%s=d~f1g4h0j"
# "password" written with a Cyrillic a: a lookalike name must not escape.
LOOKALIKE_PASSWORD = "p\u0430ssword"
# (what is logged, the substrings that must not survive)
SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "libpq_single_quoted": ("host=db password='hunter2xyz' dbname=x", (SECRET,)),
    "double_quoted": ('password="hunter2xyz"', (SECRET,)),
    "object_repr": (
        "AttrsLike(user='app', password='hunter2xyz', api_key='abc123')",
        (SECRET, "abc123"),
    ),
    "call_repr": ("login(user='app', password='hunter2xyz') failed", (SECRET,)),
    "mysql_glued_and_long_flag": ("mysql -u root -phunter2xyz --password=hunter2xyz", (SECRET,)),
    "psql_spaced_long_flag": ("psql --password hunter2xyz", (SECRET,)),
    "redis_cli": ("redis-cli -h cache -a hunter2xyz ping", (SECRET,)),
    "curl_user": ("curl -u deploy:hunter2xyz https://api.example.com", (SECRET,)),
    "escaped_json_one_level": (
        json.dumps({"Message": json.dumps({"password": SECRET, "api_key": KEY})}),
        (SECRET, KEY),
    ),
    "escaped_json_two_levels": (
        json.dumps({"Records": json.dumps({"Message": json.dumps({"password": SECRET})})}),
        (SECRET,),
    ),
    "url_password_with_at": ("postgres://app:p@ssw0rd@db:5432/app", ("p@ssw0rd", "ssw0rd")),
    "ini": ("[db]\npassword = hunter2xyz\nhost = db", (SECRET,)),
    "ini_value_with_spaces": ("password = correct horse battery", ("correct", "horse", "battery")),
    "yaml": ("db:\n  user: app\n  password: hunter2xyz\n", (SECRET,)),
    "xml": ("<login><user>app</user><password>hunter2xyz</password></login>", (SECRET,)),
    "unterminated_quote": ("password='hunter2xyz", (SECRET,)),
    # The attacker review's shapes: argv lists as reprs (CalledProcessError messages).
    "called_process_error_mysql": (
        str(subprocess.CalledProcessError(1, ["mysql", "-u", "root", "-phunter2xyz"])),
        (SECRET,),
    ),
    "called_process_error_long_flag": (
        str(subprocess.CalledProcessError(1, ["x", "--password", SECRET])),
        (SECRET,),
    ),
    "argv_repr_sshpass": (f"running {['sshpass', '-p', SECRET, 'ssh', 'host']}", (SECRET,)),
    "argv_repr_curl": (f"{('curl', '-u', 'user:' + SECRET, 'https://x')}", (SECRET,)),
    "sshpass_line": ("sshpass -p hunter2xyz ssh deploy@host", (SECRET,)),
    # Hex keys with a vendor's prefix or suffix, and random keys of symbols.
    "databricks": (f"token dapi{HEX32} set", (HEX32[:12],)),
    "shopify": (f"shpat_{HEX32}", (HEX32[:12],)),
    "mailchimp": (f"mc {HEX32}-us6 ok", (HEX32[:12],)),
    "hex_private_key": (f"key 0x{HEX32}{HEX32[::-1]}", (HEX32[:12],)),
    "short_hex_after_name": ("secret 3f9a1c0b7e6d5a4f2c1b0a9e8d", ("3f9a1c0b7e6d",)),
    "short_hex_after_quoted_name": ("token: '3f9a1c0b7e6d5a4f2c1b0a'", ("3f9a1c0b7e6d",)),
    "django_secret_key_assigned": (f"SECRET_KEY={DJANGO_KEY} DEBUG=0", (DJANGO_KEY[10:22],)),
    "django_secret_key_alone": (f"generated {DJANGO_KEY}", (DJANGO_KEY[10:22],)),
    # Unquoted values past the first space, every Authorization scheme, passphrase.
    "spaced_password": ("login password=horse battery staple user=bob", ("horse", "battery")),
    "authorization_digest": (
        'sent Authorization: Digest username="u", response="6629fae49393a05397450978507c4ef1"',
        ("6629fae49393",),
    ),
    "authorization_token": ("hdr Authorization: Token 9944b09199c62bcf9418ad846dd0", ("9944b091",)),
    "authorization_aws4": (
        "req Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam,"
        " SignedHeaders=host, Signature=5d672d79c15b13162d9279b0855cfba6",
        ("AKIDEXAMPLE", "5d672d79c15b"),
    ),
    "authorization_negotiate": ("x Authorization: Negotiate YIIGhgYGKwYBBQUCoIIG end", ("YIIGhg",)),
    "authorization_apikey": ("x Authorization: ApiKey abcdefgh12345 end", ("abcdefgh12345",)),
    "passphrase": ("passphrase: correct horse battery", ("correct", "horse")),
    "dict_items_repr": (str({"password": SECRET}.items()), (SECRET,)),
    # Passwords in URLs and DSNs.
    "url_password_with_slash": ("postgres://app:pa/ss2xyz@db:5432/x", ("ss2xyz",)),
    "url_password_with_space": ("postgres://app:pa ss2xyz@db:5432/x", ("ss2xyz",)),
    "sqlplus": ("sqlplus -s scott/hunter2xyz@orcl", (SECRET,)),
    "go_dsn": ("dsn app:hunter2xyz@tcp(db:3306)/orders", (SECRET,)),
    "odbc_braced": (
        "Driver={ODBC 18};Server=db;UID=sa;PWD={hun;ter}}2xyz};Database=x",
        ("hun;", "2xyz"),
    ),
    # The lower-priority shapes.
    "dotted_card": ("card 4111.1111.1111.1111 declined", ("4111.1111.1111",)),
    "percent_encoded_name": ("user%5Bpassword%5D=hunter2xyz&next=1", (SECRET,)),
    # Attacker review: an encoded first letter kept the name from being read at all.
    "percent_encoded_first_letter": ("GET /healthz?%63lient_secret=hunter2xyz&a=1", (SECRET,)),
    "percent_encoded_first_letter_after_a_pair": ("/x?page=2&%70assword=hunter2xyz", (SECRET,)),
    "json_escaped_first_letter": ('{"\\u0070assword": "hunter2xyz"}', (SECRET,)),
    "yaml_list": ("password:\n  - hunter2xyz\n  - second2xyz\nuser: app", (SECRET, "second2xyz")),
    "yaml_block_scalar": ("password: |\n  hunter2xyz\nuser: app", (SECRET,)),
    "xml_cdata": ("<password><![CDATA[hunter2xyz]]></password>", (SECRET,)),
    "lookalike_name": (f"{LOOKALIKE_PASSWORD}=hunter2xyz", (SECRET,)),
    # Found in the last attacker pass.
    "wrapped_value": ("DBSettings(host='db', password=SecretStr('hunter2xyz'))", (SECRET,)),
    "openssl_pass": ("openssl pkcs12 -export -passout pass:hunter2xyz -in x", (SECRET,)),
    "openssl_argv_repr": (f"{['openssl', 'rsa', '-passin', 'pass:' + SECRET]}", (SECRET,)),
    "percent_encoded_json": (
        "https://x/cb?state=%7B%22token%22%3A%20%22hunter2xyz%22%7D",
        (SECRET,),
    ),
    "zapier_webhook": ("https://hooks.zapier.com/hooks/catch/123/hunter2xyz/", (SECRET,)),
    "discord_webhook": ("https://discord.com/api/webhooks/1234/hunter2xyz-abc", (SECRET,)),
    "odbc_identifier_like_braced": ("Server=db;PWD={hunter2xyz};Database=x", (SECRET,)),
    "docker_login": ("docker login -u bob -p hunter2xyz registry.example.com", (SECRET,)),
    "seven_zip": ("7z x -phunter2xyz archive.7z", (SECRET,)),
    "unzip": ("unzip -P hunter2xyz backup.zip", (SECRET,)),
    "redis_auth_command": ("AUTH default hunter2xyz", (SECRET,)),
    "netrc": ("machine api.example.com login bob password hunter2xyz", (SECRET,)),
    "aws_configure_set": ("aws configure set aws_secret_access_key hunter2xyz", (SECRET,)),
    "client_name_inside_a_password": ("sshpass -p 000!7z.hunter2xyz ssh host", (SECRET,)),
    "client_by_path": ("cmd=/usr/bin/mysql -u root -phunter2xyz", (SECRET,)),
    "value_starting_with_equals": ("SECRET_KEY = =k#3@x!v8(z^m_2q$w0e+r&t*y5u", ("k#3@x!v8",)),
    "htpasswd_batch": ("htpasswd -bc /etc/nginx/users admin hunter2xyz", (SECRET,)),
    "powershell": ("ConvertTo-SecureString 'hunter2xyz' -AsPlainText -Force", (SECRET,)),
    "json_escaped_name": ('{"pass\\u0077ord": "hunter2xyz"}', (SECRET,)),
    "escaped_yaml_block": (repr("password:\n  - hunter2xyz\nuser: app"), (SECRET,)),
    "client_after_a_spaced_value": (
        "hunt password=hunter2xyz mysql -u root -psecond2xyz orders",
        (SECRET, "second2xyz"),
    ),
    "yaml_block_after_a_line_long_value": (
        "hunt Authorization: Bearer abc password:\n  - hunter2xyz\nuser: app",
        (SECRET,),
    ),
}
_BASIC = base64.b64encode(b"bob:hunter2xyz").decode()
_B64_PEM = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n").decode()
# The final attacker pass: what careless handlers and chatty libraries log.
SHAPES.update(
    {
        # HTTP clients' debug lines: httpcore's header lists, http.client's send line.
        "httpcore_response_headers": (
            "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK',"
            " [(b'Set-Cookie', b'sid=hunter2xyz; Path=/'), (b'X-Api-Key', b'hunter2xyz')])",
            (SECRET,),
        ),
        "httpcore_request_headers": (
            "headers=[(b'Host', b'x'), (b'Authorization', b'Token hunter2xyz')]",
            (SECRET,),
        ),
        "bytes_dict_repr": ("{b'authorization': b'hunter2xyz'}", (SECRET,)),
        "http_client_send": (
            "send: b'GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Api-Key: hunter2xyz\\r\\n'",
            (SECRET,),
        ),
        "urllib3_request_line": (
            'https://api:443 "GET /v1/x?access_token=hunter2xyz HTTP/1.1" 200 None',
            (SECRET,),
        ),
        "botocore_params": (
            "with params: {'headers': {'X-Amz-Security-Token': b'hunter2xyz'}}",
            (SECRET,),
        ),
        # SQL: literals under a secret column, SQLAlchemy's statement and parameters.
        "insert_values": (
            "INSERT INTO users (name, password) VALUES ('bob', 'hunter2xyz')",
            (SECRET,),
        ),
        "insert_many_rows": (
            "INSERT INTO users (name, password) VALUES ('bob', 'hunter2xyz'), ('al', 'second2xyz')",
            (SECRET, "second2xyz"),
        ),
        "sqlalchemy_insert_error": (
            "(sqlite3.IntegrityError) UNIQUE constraint failed: users.name\n"
            "[SQL: INSERT INTO users (name, password) VALUES (?, ?)]\n"
            "[parameters: ('bob', 'hunter2xyz')]",
            (SECRET,),
        ),
        "sqlalchemy_update_error": (
            "[SQL: UPDATE users SET password=%s WHERE users.id = %s]\n"
            "[parameters: ('hunter2xyz', 1)]",
            (SECRET,),
        ),
        "sqlalchemy_numbered_executemany": (
            "[SQL: INSERT INTO users (name, api_key) VALUES ($1, $2)]\n"
            "[parameters: [('bob', 'hunter2xyz'), ('al', 'second2xyz')]]",
            (SECRET, "second2xyz"),
        ),
        "sqlalchemy_named": (
            "[SQL: UPDATE users SET password=%(password)s]\n"
            "[parameters: {'password': 'hunter2xyz'}]",
            (SECRET,),
        ),
        "csv_row": ("name,password,email\nbob,hunter2xyz,bob@example.com\n", (SECRET,)),
        "csv_quoted_header": ('"name","password",email\nbob,hunter2xyz,x', (SECRET,)),
        "csv_in_a_repr": (repr({"a": 1, "export": "name,password\nbob,hunter2xyz"}), (SECRET,)),
        "csv_semicolons_quoted": ('user;"pwd"\nbob;"hunter2xyz"', (SECRET,)),
        # Positional arguments and stdin.
        "smtp_login": ("smtp.login('bob', 'hunter2xyz')", (SECRET,)),
        "imap_login": ('imap.login("bob", "hunter2xyz") failed', (SECRET,)),
        "ldap_bind": ("conn.simple_bind_s('cn=admin,dc=x', 'hunter2xyz')", (SECRET,)),
        "requests_basic_auth": ("HTTPBasicAuth('bob', 'hunter2xyz')", (SECRET,)),
        "auth_tuple": ("requests.get(url, auth=('bob', 'hunter2xyz'))", (SECRET,)),
        # A Django key of symbols that opens with a bracket is no tuple (the leak hunt:
        # "SECRET_KEY = (0...0)000000000" kept what followed the ")").
        "key_opening_with_a_bracket": ("SECRET_KEY = (a1)hunter2xyz", (SECRET,)),
        "key_opening_with_a_square_bracket": ("api_key=[x]hunter2xyz&page=2", (SECRET,)),
        # Round 21: ")" and "&" are in a Django key's alphabet too.
        "key_with_a_bracket_then_an_ampersand": ("SECRET_KEY = (a1)&hunter2xyz", (SECRET,)),
        "key_with_two_closing_brackets": ("SECRET_KEY = (a1&))hunter2xyz", (SECRET,)),
        "key_with_a_bracket_after_a_colon": ("secret: (a))hunter2xyz", (SECRET,)),
        "key_opening_with_an_empty_pair": ("SECRET_KEY = ())hunter2xyz", (SECRET,)),
        # Round 22: a number in brackets is a literal, and "&" or ")" after it ended
        # the value.
        "key_opening_with_a_number_then_an_ampersand": (
            "SECRET_KEY=(3)&hunter2xyz",
            (SECRET,),
        ),
        "key_opening_with_a_number_then_a_bracket": ("SECRET_KEY = (4))hunter2xyz", (SECRET,)),
        "tuple_in_a_mapping": ("{'api_key': ('bob', 'hunter2xyz')}", (SECRET,)),
        "list_of_bare_words": ("password=[a1,hunter2xyz] user=bob", (SECRET,)),
        "key_with_a_query_like_part_in_its_bracket": (
            "SECRET_KEY=(5&kx=q@)hunter2xyz",
            (SECRET,),
        ),
        "key_with_a_query_like_part_after_its_bracket": (
            "SECRET_KEY=(+94ns)&9-&bs8t=hunter2xyz",
            (SECRET,),
        ),
        "sudo_stdin": ("echo 'hunter2xyz' | sudo -S apt-get update", (SECRET,)),
        "sudo_stdin_later_flag": ("echo hunter2xyz | sudo -u app -S ls", (SECRET,)),
        "docker_password_stdin": (
            "echo hunter2xyz | docker login -u bob --password-stdin",
            (SECRET,),
        ),
        "chpasswd": ("echo 'bob:hunter2xyz' | chpasswd", (SECRET,)),
        "pgpass": ("db.internal:5432:orders:app:hunter2xyz", (SECRET,)),
        # A name in one field, the secret in its sibling.
        "grpc_metadata": ("metadata=(_Metadatum(key='x-api-key', value='hunter2xyz'),)", (SECRET,)),
        "k8s_env_yaml": ("env:\n- name: DB_PASSWORD\n  value: hunter2xyz\n", (SECRET,)),
        "k8s_env_json": (
            json.dumps({"env": [{"name": "DB_PASSWORD", "value": SECRET}]}),
            (SECRET,),
        ),
        "aws_ssm_parameter": (
            json.dumps({"Name": "/prod/db/password", "Type": "SecureString", "Value": SECRET}),
            (SECRET,),
        ),
        "pydantic_input_value": (
            "1 validation error for Login\npassword\n  String should have at most 8 characters"
            " [type=string_too_long, input_value='hunter2xyz', input_type=str]",
            (SECRET,),
        ),
        "pydantic_nested_location": (
            "1 validation error for Body\nbody.credentials.password\n  Value error"
            " [type=value_error, input_value='hunter2xyz', input_type=str]",
            (SECRET,),
        ),
        "jwk_symmetric_key": (
            json.dumps({"kty": "oct", "k": "GawgguFyGrWKav7AX4VKUg", "alg": "HS256"}),
            ("GawgguFyGrWK",),
        ),
        "jwk_ec_private": (
            json.dumps(
                {"kty": "EC", "crv": "P-256", "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9"}
            ),
            ("jpsQnnGQmL",),
        ),
        "k8s_secret_base64_pem": (f"data:\n  tls.key: {_B64_PEM}\n", (_B64_PEM[:16],)),
        "ruby_hash": ('{:password=>"hunter2xyz", :user=>"app"}', (SECRET,)),
        "ruby_string_keys": ('{"password"=>"hunter2xyz"}', (SECRET,)),
        "http_client_send_cookie": (
            "send: b'GET / HTTP/1.1\\r\\nHost: x\\r\\nCookie: sid=hunter2xyz\\r\\n'",
            (SECRET,),
        ),
        "go_struct_verbose": ("&{User:app Password:hunter2xyz Host:db}", (SECRET,)),
        "better_exceptions_locals": (
            "    connect(user, cfg.password)\n    \u2502       \u2502     \u2514 'hunter2xyz'\n"
            "    \u2502       \u2514 'bob'\n    \u2514 <function connect>",
            (SECRET,),
        ),
        "htpasswd_apr1_hash": ("bob:$apr1$abc$H6uskkkW/CnWsd4sdpbjF.", ("H6uskkkW/CnW",)),
        "bcrypt_hash": (
            "hash=$2b$12$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
            ("N9qo8uLOickgx",),
        ),
        # Already caught; kept so they stay caught.
        "set_cookie_header": ("Set-Cookie: session=hunter2xyz; Path=/; HttpOnly", (SECRET,)),
        "basic_in_header_list": (f"headers=[('Authorization', 'Basic {_BASIC}')]", (_BASIC[:10],)),
        "celery_kwargs": (
            "Task t[3f2b] received: args=('bob',) kwargs={'password': 'hunter2xyz'}",
            (SECRET,),
        ),
        "rich_traceback_locals": ("│ password = 'hunter2xyz' │", (SECRET,)),
        "environ_repr": ("environ({'PATH': '/usr/bin', 'PGPASSWORD': 'hunter2xyz'})", (SECRET,)),
        "jdbc": ("jdbc:sqlserver://db:1433;user=sa;password=hunter2xyz;", (SECRET,)),
        "mongodb_srv": ("mongodb+srv://app:hunter2xyz@cluster0.x.mongodb.net/?w=1", (SECRET,)),
        "git_credential_fill": ("protocol=https\nhost=github.com\npassword=hunter2xyz", (SECRET,)),
        "wget": ("wget --user=bob --password=hunter2xyz https://x", (SECRET,)),
        "docker_env_flag": ("docker run -e DB_PASSWORD=hunter2xyz -e X=1 app", (SECRET,)),
        "toml": ('[database]\npassword = "hunter2xyz"', (SECRET,)),
        "npmrc_uuid_token": (
            "//registry.npmjs.org/:_authToken=0a1b2c3d-aaaa-bbbb",
            ("0a1b2c3d-aaaa",),
        ),
        "github_token_in_remote": (
            "https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r.git",
            ("16C7e42F292c",),
        ),
        "telegram_bot_url": (
            "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            ("AAHdqTcvCH1v",),
        ),
        "shadow_line": (
            "root:$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq:19000::",
            ("qFmFH.bQmmtX",),
        ),
    }
)


def _leaks(secrets: tuple[str, ...], output: str) -> list[str]:
    return [secret for secret in secrets if secret in output]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_by_the_text_scanner_keeping_its_surroundings(shape: str) -> None:
    text, secrets = SHAPES[shape]
    redacted = Redactor().redact_text(text)
    assert _leaks(secrets, redacted) == []
    assert "[REDACTED" in redacted


def test_the_non_secret_parts_of_a_line_survive() -> None:
    scan = Redactor().redact_text
    assert (
        scan("host=db password='hunter2xyz' dbname=x") == "host=db password='[REDACTED]' dbname=x"
    )
    assert scan("mysql -u root -phunter2xyz db") == "mysql -u root -p[REDACTED] db"
    assert scan("postgres://app:p@ssw0rd@db:5432/app") == "postgres://[REDACTED]@db:5432/app"
    assert scan("<user>app</user><password>x</password>") == (
        "<user>app</user><password>[REDACTED]</password>"
    )
    assert scan("curl -u deploy:hunter2xyz https://x") == "curl -u deploy:[REDACTED] https://x"


@pytest.mark.parametrize(
    "text",
    [
        "mysql -u root -p db",  # prompts: the next word is a database
        "docker run -p8080:80 app",
        "ssh -p2222 host",
        "psql --password --host db",
        "see https://example.com/@handle and https://host?next=a@b.example",
        "if password == expected: retry",
        "<code>E042</code> returned",
        "token: expired",
    ],
)
def test_lookalikes_of_the_shapes_are_left_alone(text: str) -> None:
    assert Redactor().redact_text(text) == text


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_structlog_json_lines(json_log: io.StringIO, shape: str) -> None:
    text, secrets = SHAPES[shape]
    structlog.get_logger("app").info("careless", detail=text, nested={"body": {"note": text}})
    output = json_log.getvalue()
    assert json.loads(output)["event"] == "careless"
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_stdlib_message_arguments_and_extra(
    json_log: io.StringIO, shape: str
) -> None:
    text, secrets = SHAPES[shape]
    logger = logging.getLogger("tests.shapes")
    logger.warning(text)
    logger.warning("upstream said %s", text)
    logger.warning("failed", extra={"context": {"detail": text}})
    output = json_log.getvalue()
    assert len(output.splitlines()) == 3
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_by_the_logging_filter_on_a_handler_of_your_own(
    shape: str,
) -> None:
    text, secrets = SHAPES[shape]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(context)s"))
    handler.addFilter(RedactingLogFilter(Redactor()))
    logger = logging.getLogger("tests.shapes.own")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("call failed: %s", text, extra={"context": {"detail": text}})
        try:
            raise RuntimeError(text)
        except RuntimeError as exc:
            exc.add_note(f"while retrying: {text}")
            logger.exception("boom", extra={"context": None})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "while retrying" in output
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_exception_messages_notes_and_chains(
    json_log: io.StringIO, shape: str
) -> None:
    text, secrets = SHAPES[shape]
    log = structlog.get_logger("app")
    try:
        try:
            raise ConnectionError(f"cause: {text}")
        except ConnectionError as cause:
            error = RuntimeError(f"login failed: {text}")
            error.add_note(f"note: {text}")
            raise error from cause
    except RuntimeError as exc:
        log.exception("upstream_failed")
        log.warning("upstream_failed_value", error=exc)
    output = json_log.getvalue()
    assert len(output.splitlines()) == 2
    assert "note: " in output
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_sentry_events(shape: str) -> None:
    text, secrets = SHAPES[shape]
    event = {
        "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
        "message": text,
        "exception": {"values": [{"type": "RuntimeError", "value": text}]},
        "breadcrumbs": {"values": [{"message": text, "data": {"level": text}}]},
        "extra": {"body": {text: 1}},
    }
    rendered = json.dumps(sentry_before_send(event, None))
    assert _leaks(secrets, rendered) == []
    assert "fc6d8c0c43fc4630ad850ee518f1b9d0" in rendered


def test_pass_through_names_a_stdlib_caller_sets_in_extra_are_replaced_not_kept(
    json_log: io.StringIO,
) -> None:
    stripe = "sk_live_51H8abcDEFghiJKLmnoPQRstuVWXyz0123456789"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    logging.getLogger("tests.shapes").warning(
        "event", extra={"timestamp": stripe, "level": "password=hunter2xyz", "logger": jwt}
    )
    line = json.loads(json_log.getvalue())
    assert (line["level"], line["logger"]) == ("warning", "tests.shapes")
    assert line["timestamp"].endswith("Z")
    assert _leaks([stripe, "hunter2xyz", jwt], json_log.getvalue()) == []


@pytest.mark.parametrize(
    "name",
    [
        *("pw", "creds", "passcode", "psw", "db_pw", "pword", "userpass", "hmac_key", "app_key"),
        *("license_key", "priv_key", "salt", "hmacKey", "License-Key", LOOKALIKE_PASSWORD),
    ],
)
def test_the_missing_secret_names_are_secret_names(name: str) -> None:
    redactor = Redactor()
    assert redactor.is_sensitive_key(name)
    assert redactor.redact_event({name: SECRET}) == {name: "[REDACTED]"}
    assert SECRET not in redactor.redact_text(f"connect {name}={SECRET} host=db")


# Values that hold no secret though a secret word is near: each must survive unchanged.
NOT_SECRETS = [
    "code=404",
    "key=",
    "tokens=123",
    "SELECT sessions.user_id FROM sessions WHERE sessions.id = $1",
    "tokenizer=bert",
    "password_changed_at=2026-01-01T00:00:00Z",
    "secretary=Jane",
    "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "cus_NffrFeUfNV2Hib",
    "ch_3MmlLrLkdIwHu7ix0snN0B15",
    "refund re_3MtwBwLkdIwHu7ix0z1UmE8P for evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "salt_rounds=12",
    "token_ttl=3600",
    "BEGIN; SELECT pg_advisory_xact_lock(hashtext($1)); COMMIT",
    "whatsapp_keyboard=on",
    "GET /search?q=blue%20shoes&page=2 HTTP/1.1",
    "template password={password} host={host}",
    "docker run -p 8080:80 app",
    "AUTH failed for user bob in the login flow",
    "aws configure set region eu-west-1",
    "login bob then password reset",
    "login failed: password = $1",
    "htpasswd -c /etc/nginx/users admin",
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_lookalikes_of_secrets_survive_unchanged(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_names_that_describe_a_secret_keep_their_values_as_fields() -> None:
    event = {
        "tokens": 123,
        "tokenizer": "bert",
        "password_changed_at": "2026-01-01T00:00:00Z",
        "secretary": "Jane",
        "salt_rounds": 12,
        "payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    }
    assert Redactor().redact_event(event) == event


def test_a_plural_secret_name_keeps_a_count_but_not_a_list() -> None:
    redacted = Redactor().redact_event({"tokens": ["ghp_abc", "ghp_def"], "sessions": 4})
    assert redacted == {"tokens": "[REDACTED]", "sessions": 4}


def test_stripe_secrets_are_told_from_stripe_object_ids() -> None:
    scan = Redactor().redact_text
    assert scan("sk_live_51H8abcDEFghiJKLmnoPQRstu") == "[REDACTED:api_key]"
    assert scan("rk_live_51H8abcDEFghiJKLmnoPQRstu") == "[REDACTED:api_key]"
    client_secret = "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH"
    assert scan(f"confirm {client_secret}") == "confirm [REDACTED:api_key]"


class Login(NamedTuple):
    user: str
    password: str


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["mysql", "-u", "root", "-phunter2xyz"], ["mysql", "-u", "root", "-p[REDACTED]"]),
        (["x", "--password", SECRET, "-v"], ["x", "--password", "[REDACTED]", "-v"]),
        (("sshpass", "-p", SECRET, "ssh", "host"), ("sshpass", "-p", "[REDACTED]", "ssh", "host")),
        (["curl", "-u", f"user:{SECRET}", "https://x"], ["curl", "-u", "user:[REDACTED]", "https://x"]),
        (["psql", "--password", SECRET], ["psql", "--password", "[REDACTED]"]),
        (["AUTH", "default", SECRET], ["AUTH", "default", "[REDACTED]"]),
        (["htpasswd", "-b", "/x", "bob", SECRET], ["htpasswd", "-b", "/x", "bob", "[REDACTED]"]),
        (["ls", "-la", "/tmp"], ["ls", "-la", "/tmp"]),
    ],
)  # fmt: skip
def test_a_command_logged_as_a_list_is_read_as_one_command_line(
    command: list[str] | tuple[str, ...], expected: list[str] | tuple[str, ...]
) -> None:
    assert Redactor().redact_event({"argv": command}) == {"argv": expected}


def test_a_command_whose_redaction_spans_items_comes_out_as_its_redacted_line() -> None:
    command = ["curl", "-H", f"Authorization: Token {SECRET}", "https://x"]
    redacted = Redactor().redact_event({"argv": command})["argv"]
    assert SECRET not in str(redacted)
    assert redacted == "curl -H Authorization: [REDACTED]"


def test_named_tuples_and_dict_views_keep_their_names(json_log: io.StringIO) -> None:
    settings = {"user": "app", "password": SECRET}
    structlog.get_logger("app").info(
        "views",
        login=Login("app", SECRET),
        items=settings.items(),
        values=settings.values(),
        keys=settings.keys(),
    )
    line = json.loads(json_log.getvalue())
    assert SECRET not in json_log.getvalue()
    assert line["login"] == {"user": "app", "password": "[REDACTED]"}
    assert line["items"] == {"user": "app", "password": "[REDACTED]"}
    assert line["values"] == ["app", "[REDACTED]"]
    assert line["keys"] == ["user", "password"]


def test_a_card_number_stored_as_a_float_is_redacted() -> None:
    redacted = Redactor().redact_event({"card": 4111111111111111.0, "amount": 12.5})
    assert redacted == {"card": "[REDACTED:card:1111]", "amount": 12.5}
    assert Redactor().redact([5500000000000004.0]) == ["[REDACTED:card:0004]"]
    assert Redactor().redact_event({"epoch": 1714566645123.0}) == {"epoch": 1714566645123.0}


def test_truncation_never_leaves_half_a_secret_behind() -> None:
    redactor = Redactor(max_string_length=64)
    secret = "Zq8vN3kLp0Xw7RtY2mBc9HdJ4sFg6Ua1"
    for spaces in range(25):
        # The cut falls before, inside and after the secret.
        text = "x " * spaces + "upstream said " + secret + " done"
        redacted = redactor.redact_text(text)
        assert redacted.endswith("…[truncated]") or redacted == text.replace(
            secret, "[REDACTED:high_entropy]"
        )
        assert secret[:4] not in redacted


def test_most_random_django_secret_keys_are_caught_without_a_name() -> None:
    # Without a name in front, a key is caught by its shape: measured on 1000 keys made
    # as Django makes them (50 characters of a-z, 0-9 and !@#$%^&*(-_=+)).
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)"
    rng = random.Random(16)
    keys = ["".join(rng.choice(alphabet) for _ in range(50)) for _ in range(1000)]
    redactor = Redactor()
    missed = [key for key in keys if key[10:30] in redactor.redact_text(f"key {key} set")]
    assert len(missed) <= 10


def test_a_failed_format_call_shows_no_argument_on_stderr(
    json_log: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only hardenkit's handler: pytest's own capture handler raises on such errors.
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_hardenkit_handler", False)]
    logger = logging.getLogger("tests.shapes.format")
    logger.handlers[:], logger.propagate = ours, False
    try:
        logger.warning("password=%s %s", SECRET)  # noqa: PLE1206 - the careless call
        logger.warning("login %d", "sk_live_51H8abcDEFghiJKLmnoPQRstu")
    finally:
        logger.handlers[:], logger.propagate = [], True
    captured = capsys.readouterr()
    everything = captured.err + captured.out + json_log.getvalue()
    assert "--- Logging error ---" in captured.err
    assert "not shown" in captured.err
    assert SECRET not in everything
    assert "51H8abcDEF" not in everything


def test_a_failed_format_call_through_the_filter_drops_the_arguments() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "password=%s %s", (SECRET,), None)
    RedactingLogFilter(Redactor()).filter(record)
    assert SECRET not in record.getMessage()
    assert record.getMessage().startswith("password=%s %s [1 logging argument(s) not shown")


def test_structured_arguments_of_a_stdlib_call_keep_their_names(json_log: io.StringIO) -> None:
    settings = {"user": "app", "password": SECRET}
    logger = logging.getLogger("tests.shapes.arguments")
    logger.warning("values %s", settings.values())
    logger.warning("login %s", Login("app", SECRET))
    logger.warning("running %s", ["x", "--password", SECRET])
    output = json_log.getvalue()
    assert len(output.splitlines()) == 3
    assert SECRET not in output
    assert "[REDACTED]" in json.loads(output.splitlines()[2])["event"]


class Backend(enum.Enum):
    PROD = SECRET


class Config(enum.StrEnum):
    DB_PASSWORD = SECRET
    REGION = "eu-west-1"


def test_an_enum_member_is_logged_by_its_name_and_a_str_enum_by_its_names_rules() -> None:
    redacted = Redactor().redact_event(
        {"backend": Backend.PROD, "db": Config.DB_PASSWORD, "region": Config.REGION}
    )
    assert redacted == {"backend": "Backend.PROD", "db": "[REDACTED]", "region": "eu-west-1"}


def test_a_field_that_names_its_siblings_secret_redacts_it() -> None:
    event = {
        "env": [{"name": "DB_PASSWORD", "value": SECRET}, {"name": "REGION", "value": "eu"}],
        "parameter": {"Name": "/prod/db/password", "Type": "SecureString", "Value": SECRET},
        "jwk": {"kty": "oct", "k": "GawgguFyGrWKav7AX4VKUg", "alg": "HS256", "kid": "k1"},
        "public_jwk": {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9", "kid": "k2"},
    }
    assert Redactor().redact_event(event) == {
        "env": [{"name": "DB_PASSWORD", "value": "[REDACTED]"}, {"name": "REGION", "value": "eu"}],
        "parameter": {"Name": "/prod/db/password", "Type": "SecureString", "Value": "[REDACTED]"},
        "jwk": {"kty": "oct", "k": "[REDACTED]", "alg": "HS256", "kid": "k1"},
        "public_jwk": {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9", "kid": "k2"},
    }


def test_the_positional_rules_keep_their_lines_shape() -> None:
    scan = Redactor().redact_text
    assert scan("INSERT INTO users (name, password) VALUES ('bob', 'hunter2xyz')") == (
        "INSERT INTO users (name, password) VALUES ('bob', '[REDACTED]')"
    )
    assert scan("name,password,email\nbob,hunter2xyz,bob@example.com") == (
        "name,password,email\nbob,[REDACTED],bob@example.com"
    )
    assert scan(
        "[SQL: UPDATE users SET password=? WHERE users.id = ?]\n[parameters: ('x2', 7)]"
    ) == ("[SQL: UPDATE users SET password=? WHERE users.id = ?]\n[parameters: ('[REDACTED]', 7)]")
    assert scan("echo 'hunter2xyz' | sudo -S ls") == "echo '[REDACTED]' | sudo -S ls"
    assert scan("smtp.login('bob', 'hunter2xyz')") == "smtp.login('bob', '[REDACTED]')"
    assert scan("db:5432:orders:app:hunter2xyz") == "db:5432:orders:app:[REDACTED]"


# Near misses of the positional rules: no secret, nothing changed.
@pytest.mark.parametrize(
    "text",
    [
        "INSERT INTO users (name, password_hash) VALUES ($1, $2)",
        "INSERT INTO users (name, password) VALUES (?, ?)",
        "INSERT INTO orders (id, total) VALUES ('o-1', 12)",
        "[SQL: SELECT users.id FROM users WHERE users.name = ?]\n[parameters: ('bob',)]",
        "name,email,created_at\nbob,bob@example.com,2024-05-01",
        "echo $DB_PASSWORD | sudo -S true",
        "echo hello | grep h",
        "smtp.login(user, password)",
        '{"name": "region", "value": "eu-west-1"}',
        "- name: LOG_LEVEL\n  value: info",
        "1 validation error for Order\nquantity\n  Input should be a valid integer"
        " [type=int_parsing, input_value='abc', input_type=str]",
        "started at 12:30:45 on 2024-05-01T12:30:45Z",
        '{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9", "kid": "k2"}',
        "tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJrVENC",
        "    connect(user, host)\n    \u2502       \u2514 'db.internal'\n    \u2514 'bob'",
        "UPDATE t SET a = $1$ WHERE b = $2",
        "{User:app Host:db Port:5432}",
    ],
)
def test_near_misses_of_the_positional_rules_survive_unchanged(text: str) -> None:
    assert Redactor().redact_text(text) == text


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("HSET", "user:1", "password", SECRET), ("HSET", "user:1", "password", "[REDACTED]")),
        (["CONFIG", "SET", "requirepass", SECRET], ["CONFIG", "SET", "requirepass", "[REDACTED]"]),
        (["CONFIG", "SET", "masterauth", SECRET], ["CONFIG", "SET", "masterauth", "[REDACTED]"]),
        # redis-py's handshake with a username: the password is the second word after AUTH.
        (("HELLO", 3, "AUTH", "default", SECRET), ("HELLO", 3, "AUTH", "default", "[REDACTED]")),
        (("HELLO", 3, "AUTH", "default", SECRET, "SETNAME", "app"),
         ("HELLO", 3, "AUTH", "default", "[REDACTED]", "SETNAME", "app")),
        (["MIGRATE", "h", "6379", "", "0", "5000", "AUTH", SECRET, "KEYS", "a"],
         ["MIGRATE", "h", "6379", "", "0", "5000", "AUTH", "[REDACTED]", "KEYS", "a"]),
        (["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH2", "u", SECRET],
         ["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH2", "u", "[REDACTED]"]),
        (["CONFIG", "SET", "requirepass", f"-{SECRET}"],
         ["CONFIG", "SET", "requirepass", "[REDACTED]"]),
        ([b"host", b"x", b"authorization", SECRET.encode(), b"accept", b"*/*"],
         ["host", "x", "authorization", "[REDACTED]", "accept", "*/*"]),
        (["user", "bob", "api_key", SECRET, "region", "eu"],
         ["user", "bob", "api_key", "[REDACTED]", "region", "eu"]),
        (["redis-cli", "-h", "db", "CONFIG", "SET", "requirepass", SECRET],
         ["redis-cli", "-h", "db", "CONFIG", "SET", "requirepass", "[REDACTED]"]),
        # A value is never judged by its looks: the item after a secret name is hidden,
        # even a name of fields listed side by side.
        (["token", "password", "secret"], ["token", "[REDACTED]", "secret"]),
        (["password", "pw_A1x9", "get"], ["password", "[REDACTED]", "get"]),
        (["tokens", 5, "pages", 2], ["tokens", 5, "pages", 2]),
    ],
)  # fmt: skip
def test_a_name_and_its_value_side_by_side_in_a_list_are_paired(
    command: list[Any] | tuple[Any, ...], expected: list[Any] | tuple[Any, ...]
) -> None:
    # Redis commands and flat header lists name a value in the item before it; a list
    # longer than one pair was scanned item by item, and the value logged in clear.
    assert Redactor().redact_event({"command": command}) == {"command": expected}
    if all(type(item) is str for item in command):  # the repr in a message: the same rule
        message = Redactor().redact_text(f"Command {command!r} failed")
        assert SECRET not in message
        assert message == f"Command {expected!r} failed"


_SURROGATE_LINES = """
import logging, sys
import structlog
from hardenkit.logs import configure_logging
from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.settings import HardenSettings

configure_logging(HardenSettings(log_format=sys.argv[1]))  # sys.stdout: UTF-8, strict
structlog.get_logger("surrogate").warning("login", user="bob\\ud800")
audit(AuditEventType.AUTH, "denied", actor="eve\\udfff", reason="tenant_mismatch")
logging.getLogger("surrogate").warning("path %s", "/a\\udc80")
"""


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_line_holding_a_lone_surrogate_is_written_not_lost(log_format: str) -> None:
    # A lone surrogate is no character: a UTF-8 stream refused the whole console line
    # ("--- Logging error ---"), audit events included. It is written escaped instead.
    # In a child process: pytest's own capture of such records cannot cross xdist.
    import os
    import sys

    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-c", _SURROGATE_LINES, log_format],
        capture_output=True,
        env=environment,
        timeout=60,
        check=True,
    )
    written = done.stdout.decode("utf-8")
    assert "Logging error" not in done.stderr.decode("utf-8", "replace")
    for kept in ("bob", "eve", "/a", "tenant_mismatch"):
        assert kept in written
    for escaped in ("\\ud800", "\\udfff", "\\udc80"):
        assert escaped in written


def test_an_audit_reason_is_written_as_itself_whatever_its_enum_is_named(
    json_log: io.StringIO,
) -> None:
    # The redactor hides an enum member whose name looks secret (API_KEY, CREDENTIALS):
    # auth's reasons missing_api_key, bad_api_key and ambiguous_credentials were written
    # as "[REDACTED]", and key guessing could not be told from duplicate headers.
    from hardenkit.auth._refusal import AuthRefusedError, record_refusal
    from hardenkit.auth.errors import RefusalReason
    from hardenkit.errors import ErrorCode

    for reason in RefusalReason:
        refused = AuthRefusedError(401, ErrorCode.AUTHENTICATION_ERROR, reason, "No.")
        record_refusal(refused, "/api/me")
    written = [json.loads(line)["reason"] for line in json_log.getvalue().splitlines()]
    assert written == [reason.value for reason in RefusalReason]


def test_a_secret_passed_as_an_audit_reason_is_still_redacted(json_log: io.StringIO) -> None:
    # audit() does not turn its reason into a string itself: str() would unwrap what
    # only its repr masks (Starlette's Secret) and give a secret-named member's value.
    import enum as enum_module

    from starlette.datastructures import Secret

    from hardenkit.logs.audit import AuditEventType, audit

    class Credentials(enum_module.StrEnum):
        API_KEY = "correct-horse-battery-staple"

    audit(AuditEventType.AUTH, "denied", reason=Secret("s3cr3t-db-password-value"))  # type: ignore[arg-type]
    audit(AuditEventType.AUTH, "denied", reason=Credentials.API_KEY)
    output = json_log.getvalue()
    assert "s3cr3t-db-password-value" not in output
    assert "correct-horse-battery-staple" not in output
