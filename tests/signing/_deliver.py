"""Run by test_reference_app in a separate process: deliver one webhook several times.

Arguments: redis_url key_prefix body headers_json count. Prints one JSON object per
delivery (status and body) so the parent can count how often the handler ran.
"""

from __future__ import annotations

import json
import sys

from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import demo_settings


def main() -> None:
    redis_url, prefix, body, headers_json, count = sys.argv[1:6]
    settings = demo_settings(
        redis_url=redis_url, replay_key_prefix=prefix, redis_socket_timeout=2.0
    )
    headers = json.loads(headers_json)
    # One event loop for the whole run, as under a real server (the Redis client's
    # connections belong to the loop that opened them).
    with TestClient(create_app(settings)) as client:
        for _ in range(int(count)):
            response = client.post("/webhooks/demo", content=body.encode(), headers=headers)
            result = {"status": response.status_code, "body": response.json()}
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
