"""The benchmark's own measuring parts: wrk's report, CPU shares, the load client's parser."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.__main__ import _ratio, _report
from benchmarks._cpu import (
    CorePlan,
    CoreTimes,
    core_busy,
    cpu_seconds,
    cpu_share,
    parse_cpu_line,
    parse_proc_stat,
    parse_schedstat,
    plan_cores,
    split_core,
)
from benchmarks._harness import Row, Section
from benchmarks._load import parse_response, run_load
from benchmarks._throughput import Measurement, Variant, median_range
from benchmarks._wrk import parse_wrk
from benchmarks.bench_layers import BARE, FULL, HEADERS, LEAN, NO_LAYER, layer_table
from benchmarks.bench_throughput import stack_table

WRK_OK = """Running 1s test @ http://127.0.0.1:18778/api/me
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.07ms    2.21ms  20.96ms   91.52%
    Req/Sec     9.88k     4.27k   17.52k    60.00%
  9896 requests in 1.01s, 1.51MB read
Requests/sec:   9820.36
Transfer/sec:      1.50MB
"""

WRK_FAILING = """Running 1s test @ http://127.0.0.1:18778/nope
  1 threads and 4 connections
  10987 requests in 1.00m, 1.56MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 10987
Requests/sec:  10981.31
"""


def test_wrk_report_gives_requests_and_its_own_elapsed_time() -> None:
    summary = parse_wrk(WRK_OK)
    assert summary.requests == 9896
    assert summary.seconds == pytest.approx(1.01)
    assert summary.non_2xx == 0
    assert summary.socket_errors == 0


def test_wrk_report_counts_refused_responses_and_socket_errors_in_any_time_unit() -> None:
    summary = parse_wrk(WRK_FAILING)
    assert summary.seconds == pytest.approx(60.0)
    assert summary.non_2xx == 10987
    assert summary.socket_errors == 10


def test_wrk_report_without_a_total_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="no request total"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_proc_stat_cpu_is_user_plus_system_counted_after_the_command_name() -> None:
    # A command name with spaces and parentheses must not shift the fields.
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]
    text = "4242 (uvicorn (x) y) " + " ".join(fields)
    assert parse_proc_stat(text, ticks_per_second=100) == pytest.approx(3.0)


def test_schedstat_cpu_is_the_first_field_in_nanoseconds() -> None:
    assert parse_schedstat("1500000000 2000 7\n") == pytest.approx(1.5)


@pytest.mark.skipif(sys.platform != "linux", reason="CPU time is read from /proc")
def test_cpu_seconds_of_a_process_are_the_time_it_ran_not_the_time_it_slept() -> None:
    # A child that sleeps, then spins 0.3 s of its own CPU time: the reading across the
    # spin grows by that, not by the wall time around it.
    code = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print('spun', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # started, and waiting for the go
        before = cpu_seconds(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "spun\n"
        after = cpu_seconds(child.pid)
        assert before is not None
        assert after is not None
        # The spin is measured by the child's own clock; the reading adds the few
        # instructions around it (reading a line, printing one), never a sampling tick.
        assert after - before == pytest.approx(0.3, abs=0.02)
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) is None  # a process that is gone is unknown, not zero


def test_cpu_share_is_cpu_seconds_over_wall_seconds() -> None:
    assert cpu_share(10.0, 12.85, 3.0) == pytest.approx(0.95)
    assert cpu_share(None, 12.0, 3.0) is None
    assert cpu_share(10.0, 12.0, 0.0) is None


def test_core_busy_counts_every_column_but_idle_iowait_and_steal() -> None:
    before = "cpu  1 2 3 4\ncpu0 100 0 50 800 50 0 0 0 0 0\ncpu1 9 9 9 9 9 9 9 9 9 9\n"
    after = "cpu  1 2 3 4\ncpu0 190 0 60 800 50 0 0 100 0 0\ncpu1 9 9 9 9 9 9 9 9 9 9\n"
    first, second = parse_cpu_line(before, 0), parse_cpu_line(after, 0)
    assert (first.busy, first.total) == (150, 1000)
    # 100 ticks ran, 100 ticks the hypervisor took: busy half the time, not all of it.
    assert core_busy(first, second) == pytest.approx(0.5)
    assert core_busy(first, first) is None
    with pytest.raises(ValueError, match="core 7"):
        parse_cpu_line(before, 7)


def test_the_server_core_splits_into_server_other_processes_steal_and_idle() -> None:
    #             user nice system idle iowait irq softirq steal
    before = CoreTimes(0, 0, 0, 0, 0, 0, 0, 0)
    # 10 s at 100 ticks/s, of which the tick sampling saw 900 (busy time it missed).
    after = CoreTimes(520, 20, 100, 90, 10, 0, 60, 100)
    split = split_core(before, after, server_share=0.55, wall_seconds=10.0, ticks_per_second=100)
    assert split is not None
    assert split.idle == pytest.approx(0.1)
    assert split.steal == pytest.approx(0.1)
    assert split.other == pytest.approx(0.25)
    assert 0.55 + split.other + split.steal + split.idle == pytest.approx(1.0)
    assert split.interrupts == pytest.approx(60 / 900)
    # A server read a tick above what idle and steal leave: no one else, not less.
    over = split_core(before, after, server_share=0.81, wall_seconds=10.0, ticks_per_second=100)
    assert over is not None
    assert over.other == 0.0
    assert split_core(before, after, None, 10.0) is None
    assert split_core(after, after, 0.5, 10.0) is None
    assert split_core(before, after, 0.5, 0.0) is None


def test_server_gets_one_core_and_the_load_generator_the_others() -> None:
    plan = plan_cores({0, 1, 2, 3})
    assert plan == CorePlan(frozenset({0}), frozenset({1, 2, 3}))
    assert plan.pinned
    single = plan_cores({5})
    assert not single.pinned
    assert "share the cores" in single.describe()


def test_median_range_of_rounds() -> None:
    assert median_range([0.3, 0.25, 0.4]) == (0.3, 0.25, 0.4)


def test_a_round_ratio_row_judges_the_median_and_prints_its_range() -> None:
    row = Row("throughput", "x", 1000.0, "bare", 1500.0, min_ratio=0.55,
              measured_ratio=0.5, spread=(0.45, 0.6))  # fmt: skip
    assert row.ratio == 0.5
    assert not row.ok
    assert _ratio(row) == "0.50× (0.45–0.60)"


def _response(status: int, body: bytes, name: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\nserver: uvicorn\r\n%s: %d\r\n\r\n" % (status, name, len(body)) + body


@given(
    responses=st.lists(
        st.tuples(
            st.sampled_from([200, 401, 429, 504]),
            st.binary(max_size=40),
            st.sampled_from([b"content-length", b"Content-Length", b"CONTENT-LENGTH"]),
        ),
        min_size=1,
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_load_client_reads_every_response_however_the_stream_is_split(
    responses: list[tuple[int, bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(_response(*response) for response in responses)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {len(stream)})
    buffer = bytearray()
    seen: list[int] = []
    start = 0
    for point in points:
        buffer += stream[start:point]
        start = point
        while (parsed := parse_response(buffer)) is not None:
            status, used = parsed
            del buffer[:used]
            seen.append(status)
    assert seen == [status for status, _, _ in responses]
    assert not buffer


def test_load_client_refuses_a_response_it_cannot_delimit() -> None:
    with pytest.raises(ValueError, match="no Content-Length"):
        parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n")
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 27)


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    served = 0
    status = 200
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).served += 1
        body = b'{"ok":true}'
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def counting_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Counting]]]:
    handler = type("Handler", (_Counting,), {"served": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def test_load_client_counts_exactly_the_responses_the_server_sent(
    counting_server: tuple[ThreadingHTTPServer, type[_Counting]],
) -> None:
    server, handler = counting_server
    result = run_load("127.0.0.1", server.server_address[1], "/", concurrency=3, seconds=0.3)
    assert result.requests > 0
    assert result.requests == handler.served
    assert result.errors == 0
    assert result.client_cpu_seconds is not None


def test_load_client_counts_refused_responses_as_errors(
    counting_server: tuple[ThreadingHTTPServer, type[_Counting]],
) -> None:
    server, handler = counting_server
    handler.status = 429
    result = run_load("127.0.0.1", server.server_address[1], "/", concurrency=2, seconds=0.2)
    assert result.requests > 0
    assert result.errors == result.requests


def test_load_client_only_targets_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_load("192.0.2.1", 80, "/", seconds=0.1)


def test_report_marks_each_section_for_the_docs_to_include() -> None:
    report = _report([], [Section("layer-costs", "Cost per layer", "| a |\n|---|")])
    assert "## Cost per layer" in report
    start = report.index("<!-- --8<-- [start:layer-costs] -->")
    end = report.index("<!-- --8<-- [end:layer-costs] -->")
    assert start < report.index("| a |") < end


def test_report_marks_the_figures_table_and_its_machine_for_the_docs_to_include() -> None:
    row = Row("auth", "fresh token", 1.0, "PyJWT", 2.0, max_ratio=1.0)
    report = _report([row], [])
    start = report.index("<!-- --8<-- [start:figures] -->")
    end = report.index("<!-- --8<-- [end:figures] -->")
    assert start < report.index("Machine: ") < report.index("| auth | fresh token |") < end


def _run(cpu_us: float) -> Measurement:
    return Measurement(
        per_second=1e6 / cpu_us,
        server_share=1.0,
        server_core_busy=1.0,
        server_core=None,
        server_cpu_us=cpu_us,
        client_cores=0.5,
    )


def test_the_layer_table_counts_each_layer_above_the_app_it_was_added_to() -> None:
    results = {
        BARE: [_run(100.0)],
        FULL: [_run(300.0)],
        NO_LAYER: [_run(110.0)],
        "1. A": [_run(150.0)],
    }
    costs = [(NO_LAYER, NO_LAYER, BARE), ("1. A", "1. A", NO_LAYER)]
    counted = {BARE: 230_000.0, FULL: 700_000.0, NO_LAYER: 260_000.0, "1. A": 360_000.0}
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in layer_table(results, costs, counted).splitlines()
    }
    # 150 - 110 = 40 µs of a 200 µs gap; 100k instructions above the no-layer app; no
    # count of the stack without it, so nothing in the last column.
    assert rows["1. A"] == "| 1. A | 40.0 | 20% | 40.0 | 100k |  |"
    assert rows["full stack above bare (the gap)"].endswith("| 470k | 470k |")
    assert rows["sum of the layers"].endswith("| 130k |  |")
    assert rows["not in the sum (running them together)"].endswith("| 340k |  |")
    assert rows["bare Starlette itself"].endswith("| 230k | |")
    # Without valgrind the columns stay, empty, and nothing is made up.
    assert layer_table(results, costs).splitlines()[2].endswith("|  |  |")


def test_a_layers_cost_in_the_full_stack_is_the_stack_without_it_subtracted() -> None:
    results = {
        BARE: [_run(100.0)],
        FULL: [_run(300.0)],
        NO_LAYER: [_run(110.0)],
        "1. A": [_run(150.0)],
        "2. B": [_run(130.0)],
    }
    costs = [(NO_LAYER, NO_LAYER, BARE), ("1. A", "1. A", NO_LAYER), ("2. B", "2. B", NO_LAYER)]
    counted = {
        BARE: 230_000.0,
        FULL: 700_000.0,
        NO_LAYER: 260_000.0,
        "1. A": 360_000.0,
        "2. B": 300_000.0,
        "without A": 640_000.0,
        "without B": 690_000.0,
    }
    without = {"1. A": "without A", "2. B": "without B"}
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in layer_table(results, costs, counted, without).splitlines()
    }
    # A costs 100k alone but 60k in the stack; B 40k alone, 10k in the stack.
    assert rows["1. A"].endswith("| 100k | 60k |")
    assert rows["2. B"].endswith("| 40k | 10k |")
    assert rows["sum of the layers"].endswith("| 170k | 70k |")
    # 470k of gap: 30k is row 0's (not removable), the rest is what running them costs.
    assert rows["not in the sum (running them together)"].endswith("| 300k | 400k |")


def test_the_reference_rows_are_rows_of_their_own_in_no_sum() -> None:
    results = {
        BARE: [_run(100.0)],
        FULL: [_run(300.0)],
        NO_LAYER: [_run(110.0)],
        "1. A": [_run(150.0)],
        HEADERS: [_run(130.0)],
        LEAN: [_run(160.0)],
    }
    costs = [(NO_LAYER, NO_LAYER, BARE), ("1. A", "1. A", NO_LAYER)]
    counted = {
        BARE: 230_000.0,
        FULL: 700_000.0,
        NO_LAYER: 260_000.0,
        "1. A": 360_000.0,
        HEADERS: 310_000.0,
        LEAN: 350_000.0,
    }
    lines = layer_table(results, costs, counted).splitlines()
    # 30 µs of the 200 µs gap, 80k instructions above bare; the sums are as without it.
    assert lines[-2] == f"| {HEADERS} (above bare) | 30.0 | 15% | 30.0 | 80k | |"
    assert lines[-1] == f"| {LEAN} (above bare) | 60.0 | 30% | 60.0 | 120k | |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines}
    assert rows["sum of the layers"].endswith("| 130k |  |")


def test_the_stack_table_shows_a_peers_failed_requests() -> None:
    variants = [Variant("bare", "bare"), Variant("peer, Redis", "peer", may_fail=True)]
    failing = replace(_run(500.0), failed=6)
    table = stack_table(variants, {"bare": [_run(100.0)], "peer, Redis": [failing, failing]})
    bare_line, peer_line = table.splitlines()[2:]
    assert bare_line.endswith("| 0 |")
    assert peer_line.endswith("| 12 |")  # both rounds' failures, none hidden
