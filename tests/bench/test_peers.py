"""bench/peers.py: the mosec and Triton command lines carry the service's settings; the report renders every row."""

import json
import sysconfig
from typing import Any

from bench import venvs
from bench.load import ROOT
from bench.peers import DECODE_CLIENTS, mosec_argv, peers_report, triton_argv, triton_env
from bench.workloads import CLIENTS
from service.settings import Settings

MODELS = ROOT / "models"


def row(clients: int, rps: float) -> dict:
    return {
        "clients": clients,
        "rps": rps,
        "p50_ms": 1.0,
        "p95_ms": 2.0,
        "p99_ms": 3.0,
        "errors": 0,
        "server_cpu_ms": 0.25,
        "loadgen_cpu": 0.5,
    }


def server(encode: bool = True) -> dict:
    figures: dict[str, Any] = {"ready_s": 1.5, "rss_mib": 100.0, "max_abs_diff": 2e-7}
    figures["decode"] = [row(c, 40.0 + c) for c in DECODE_CLIENTS]
    if encode:
        figures["encode"] = [row(c, 1000.0 + c) for c in CLIENTS]
    return figures


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_report_has_a_row_per_server_route_and_client_count():
    mosec = {"pins": list(venvs.PINS["mosec"]), "workers": {"1": server(), "2": server(encode=False)}}
    triton = {**server(), "pins": list(venvs.PINS["triton"])}
    lines = peers_report({"model": "mnist-vae", "mosec": mosec, "triton": triton, "service": server()})
    assert lines[0] == "## mosec and Triton (PyTriton) beside the service (mnist-vae)"
    table = [line for line in lines if line.startswith("| ") and "req/s" not in line]
    encodes, decodes = [t for t in table if "ncode" in t], [t for t in table if "ecode" in t and "ncode" not in t]
    assert len(encodes) == 3 * len(CLIENTS)  # mosec with one worker, Triton, the service
    assert len(decodes) == 4 * len(DECODE_CLIENTS)  # mosec with one and two workers, Triton, the service
    assert "| mosec, 2 worker(s) per route, `POST /decode` (npy in and out) | 8 | 48 |" in "\n".join(decodes)
    assert all(t.count("|") == 10 for t in table)  # the columns of overhead.HEAD
    assert "`mosec==0.9.8`" in lines[2] and "`nvidia-pytriton==0.7.0`" in lines[2]
    assert sum(line.startswith("- ") for line in lines) == 4  # start-up and agreement, per server


def test_one_peers_figures_render_alone():
    lines = peers_report({"model": "null-vae", "triton": {**server(), "pins": []}, "service": server()})
    assert not any("mosec" in line for line in lines[4:])


def test_the_mosec_command_line_carries_batching_and_session_options():
    settings = Settings(max_batch_rows=32, max_batch_delay_ms=0.4)
    argv = mosec_argv(MODELS, "mnist-vae", 8100, 2, settings)
    assert argv[:2] == ["-m", "bench.mosec_peer"] and value(argv, "--port") == "8100"
    assert value(argv, "--max-batch-rows") == "32"
    assert value(argv, "--max-batch-delay-ms") == "1"  # mosec's least wait; 0 would mean its own 10 ms
    assert value(argv, "--workers") == "2" and value(argv, "--address") == "127.0.0.1"
    runtime = json.loads(value(argv, "--runtime"))
    assert runtime["session"]["intra_op_num_threads"] >= 1 and set(runtime["providers"]) == {"encoder", "decoder"}


def test_the_triton_command_line_and_environment():
    argv = triton_argv(MODELS, "mnist-vae", 8200, Settings(max_latents=512))
    assert argv[:2] == ["-m", "bench.triton_peer"] and value(argv, "--max-latents") == "512"
    assert value(argv, "--max-batch-delay-ms") == "2.0"
    assert triton_env()["LD_LIBRARY_PATH"].split(":")[0] == sysconfig.get_config_var("LIBDIR")
