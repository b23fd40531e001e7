"""The apps the throughput benchmarks serve, and one real round under uvicorn."""

from __future__ import annotations

import os
import sys

import pytest
from starlette.applications import Starlette

from benchmarks import _throughput_apps
from benchmarks._cpu import plan_cores
from benchmarks._throughput import Variant, measure_rounds
from benchmarks._throughput_apps import hardenkit_environment, installed_layers, token
from benchmarks.bench_layers import BARE, NO_LAYER, layer_variants


@pytest.fixture
def bench_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in hardenkit_environment().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("bench_settings")
def test_every_installed_layer_is_measured_once_and_principal_layers_on_top_of_auth() -> None:
    names = [layer.cls.__name__ for layer in installed_layers()]
    auth = names.index("AuthMiddleware")
    variants, costs, without = layer_variants()
    layers = {variant.name: variant.env.get("BENCH_LAYER") for variant in variants}
    assert costs[0] == (NO_LAYER, NO_LAYER, BARE)
    assert layers[NO_LAYER] == ""
    assert len(costs) == len(names) + 1
    for index, (label, variant, base) in enumerate(costs[1:]):
        assert label.startswith(f"{index + 1}. {names[index]}")
        if index > auth:
            assert layers[variant] == f"{auth},{index}"
            assert base == f"{auth + 1}. AuthMiddleware"
        else:
            assert layers[variant] == str(index)
            assert base == NO_LAYER
        # In the full stack: every other layer, in order.
        others = [str(other) for other in range(len(names)) if other != index]
        assert without[label].factory == "layer"
        assert without[label].env == {"BENCH_LAYER": ",".join(others)}
    assert len(without) == len(names)


@pytest.mark.usefixtures("bench_settings")
def test_the_header_floor_app_sends_what_the_full_stack_sends_and_does_nothing_else() -> None:
    from starlette.testclient import TestClient

    def sent(app: Starlette) -> list[str]:
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            response = client.get("/api/me", headers={"Authorization": f"Bearer {token()}"})
        assert response.status_code == 200
        return [name for name, _ in response.headers.multi_items()]

    assert sent(_throughput_apps.bare_headers()) == sent(_throughput_apps.hardened())
    assert sent(_throughput_apps.lean()) == sent(_throughput_apps.hardened())
    assert len(sent(_throughput_apps.bare())) == 2  # what the floor adds is those headers
    assert _throughput_apps.bare_headers().user_middleware[0].cls.__name__ == "_SendHeaders"


@pytest.mark.usefixtures("bench_settings")
def test_layer_app_keeps_only_the_chosen_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_LAYER", "0,3")
    all_layers = installed_layers()
    app = _throughput_apps.layer()
    assert [layer.cls for layer in app.user_middleware] == [
        all_layers[0].cls,
        all_layers[3].cls,
    ]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="CPU shares are read from /proc")
def test_one_round_under_uvicorn_records_throughput_and_the_servers_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_LOAD", "python")
    cores = plan_cores()
    affinity = os.sched_getaffinity(0)
    results = measure_rounds(
        [Variant("bare", "bare", connections=4)],
        headers={"Authorization": f"Bearer {token()}"},
        base_env=_throughput_apps.server_environment(),
        rounds=1,
        seconds=2.0,
        cores=cores,
    )
    assert os.sched_getaffinity(0) == affinity  # the harness gave its cores back
    (run,) = results["bare"]
    assert run.per_second > 0
    assert run.server_cpu_us is not None
    assert run.server_cpu_us > 0
    assert run.server_share is not None
    assert 0 < run.server_share <= 1.01  # one core, timed by the scheduler
    assert run.client_cores is not None
    if cores.pinned:  # where the rest of the server core went, all of it accounted for
        assert run.server_core is not None
        split = run.server_core
        parts = (run.server_share, split.other, split.steal, split.idle)
        assert all(part >= 0 for part in parts)
        # The server's time and idle are timed exactly, idle and steal reported to the
        # clock tick (1/100 s, half a percent of the round each). A sum far from 1 would
        # mean a part measured over another window or on another core. (When the
        # server's time was sampled at each tick instead, the sum read up to 12% high.)
        assert sum(parts) == pytest.approx(1.0, abs=0.03)


@pytest.mark.usefixtures("bench_settings")
def test_the_lean_reference_verifies_the_token_it_caches() -> None:
    """The lean row does the work it claims: a token it has not verified gets nothing."""
    import time

    import jwt
    from starlette.testclient import TestClient

    now = int(time.time())
    good = {
        "sub": "alice", "tenant_id": "acme", "iss": _throughput_apps.ISSUER,
        "aud": _throughput_apps.AUDIENCE, "iat": now, "exp": now + 60,
    }  # fmt: skip
    secret = _throughput_apps.SECRET

    def status(claims: dict[str, object], key: str = secret) -> int:
        with TestClient(_throughput_apps.lean()) as client:
            token = jwt.encode(claims, key, algorithm="HS256")
            return client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code

    assert status(good) == 200
    assert status(good, key="another-secret-of-enough-length-for-hs256") == 401
    assert status({**good, "exp": now - 5}) == 401
    assert status({**good, "aud": "elsewhere"}) == 401
    assert status({key: value for key, value in good.items() if key != "tenant_id"}) == 401
