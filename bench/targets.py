"""The targets, each a ratio or figure from one run's results, with its threshold and whether it is met."""

from __future__ import annotations

from typing import Any

from .overhead import BULK_N, RAW_BATCHES
from .peer_requests import DECODE_ROWS
from .workloads import CLIENTS


def _at(rows: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    return next(r for r in rows if r["clients"] == clients)


def at_least(figure: str, value: float, target: float, stretch: float | None = None) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "target": f">= {target:g}" + (f" (stretch >= {stretch:g})" if stretch is not None else ""),
        "met": value >= target,
        "stretch_met": None if stretch is None else value >= stretch,
    }


def at_most(figure: str, value: float, target: float, stretch: float | None = None) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "target": f"<= {target:g}" + (f" (stretch <= {stretch:g})" if stretch is not None else ""),
        "met": value <= target,
        "stretch_met": None if stretch is None else value <= stretch,
    }


def batching_gain(figure: str, on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """Batching on over off: more req/s and a p99 no worse."""
    return {
        "figure": f"{figure}, req/s (p99 on / off: {on['p99_ms']:.0f} / {off['p99_ms']:.0f} ms)",
        "value": on["rps"] / off["rps"],
        "target": ">= 1, p99 no worse",
        "met": on["rps"] >= off["rps"] and on["p99_ms"] <= off["p99_ms"],
        "stretch_met": None,
    }


def targets(results: dict[str, Any], peer_model: str) -> list[dict[str, Any]]:
    """Every target of the issue, from `results` as bench/run.py gathers them."""
    top = max(CLIENTS)
    on, off, peer = results["service"]["batching on"], results["service"]["batching off"], results["peer"]
    largest = max(r["batch"] for r in results["raw"])
    raw = next(r for r in results["raw"] if (r["model"], r["graph"], r["batch"]) == (peer_model, "decoder", largest))
    encode_on, empty = _at(on["encode"], top), _at(results["empty"], top)
    null = results["overhead"]
    null_raw = next(r for r in null["raw"] if (r["graph"], r["batch"]) == ("decoder", max(RAW_BATCHES)))
    null_one, null_two = null["processes"]
    litserve, beside = results["litserve"]["litserve"], results["litserve"]["service"]
    out = [
        *peer_targets(results, peer_model),
        # The null model: what the service costs by itself.
        at_least(
            f"null model: `/sample?n={BULK_N}&format=npy` images/s over the raw null decoder's rows/s at batch "
            f"{null_raw['batch']}",
            null["bulk"]["npy"]["images_per_s"] / null_raw["rows_per_s"],
            0.3,
            0.5,
        ),
        at_least(
            f"null model: `/encode` req/s at {top} clients over the empty endpoint's",
            _at(null["batching on"]["encode"], top)["rps"] / empty["rps"],
            0.6,
            0.8,
        ),
        *(
            batching_gain(
                f"null model: batching on over off, `{path}` at {top} clients",
                _at(null["batching on"][key], top),
                _at(null["batching off"][key], top),
            )
            for key, path in (("encode", "/encode"), ("sample1", "/sample?n=1"))
        ),
        at_least(
            f"null model: VAE_PROCESSES=2 over 1, `/encode` req/s at {top} clients ({results['machine']['cores']} "
            "cores)",
            null_two["rps"] / null_one["rps"],
            1.3,
        ),
        # The shipped models.
        at_least(
            f"`/sample?n=256&format=npy` images/s over the raw decoder's rows/s at batch {largest}",
            on["sample256_npy"]["images_per_s"] / raw["rows_per_s"],
            0.9,
        ),
        at_least(f"`/encode` req/s at {top} clients over the empty endpoint's", encode_on["rps"] / empty["rps"], 0.5),
        at_least(
            "`/sample?n=64&format=png` images/s (8 clients) over the PyTorch-eager server's",
            on["sample64_png"]["images_per_s"] / peer["sample64_png"]["images_per_s"],
            2.0,
        ),
        at_least(
            "`/sample?n=64&format=npy` images/s (8 clients) over the PyTorch-eager server's",
            on["sample64_npy"]["images_per_s"] / peer["sample64_npy"]["images_per_s"],
            2.0,
        ),
        at_least(
            f"`/encode` req/s at {top} clients over the PyTorch-eager server's",
            encode_on["rps"] / _at(peer["encode"], top)["rps"],
            2.0,
        ),
        at_least(
            f"`/encode` (multipart upload) req/s at {top} clients over the LitServe server's",
            _at(beside["encode_form"], top)["rps"] / _at(litserve["encode_form"], top)["rps"],
            1.5,
        ),
        *(
            batching_gain(f"batching on over off, `{path}` at {top} clients", _at(on[key], top), _at(off[key], top))
            for key, path in (("encode", "/encode"), ("sample1", "/sample?n=1"))
        ),
        at_most("process start to `/ready`, models warmed (s)", on["ready_s"], 1.5, 1.0),
        at_most(
            f"resident memory after warm-up of a server process (MiB; {on['processes']} process(es), "
            f"{on['rss_mib']:.0f} MiB in all with the supervisor)",
            on["rss_per_process_mib"],
            200,
        ),
    ]
    return out


def peer_targets(results: dict[str, Any], peer_model: str) -> list[dict[str, Any]]:
    """Against the peers a user would pick instead: mosec and Triton on the null model (the serving stacks alone),
    PyTorch-eager and LitServe on the shipped model, onnxruntime's default options on the shipped decoder."""
    top = max(CLIENTS)
    peers = results["peers"]
    service, mosec = peers["service"], peers["mosec"]["workers"]
    encode, mosec_encode = _at(service["encode"], top), _at(mosec["1"]["encode"], top)
    decode_clients = max(r["clients"] for r in service["decode"])
    on = results["service"]["batching on"]
    default = results["raw_default"]
    # At one client: the service beside each peer on the same model and request.
    one = {
        "mosec": (_at(service["encode"], 1), _at(mosec["1"]["encode"], 1)),
        "Triton": (_at(service["encode"], 1), _at(peers["triton"]["encode"], 1)),
        "PyTorch-eager": (_at(on["encode"], 1), _at(results["peer"]["encode"], 1)),
        "LitServe": (
            _at(results["litserve"]["service"]["encode_form"], 1),
            _at(results["litserve"]["litserve"]["encode_form"], 1),
        ),
    }
    slowest = min(one, key=lambda peer: one[peer][0]["rps"] / one[peer][1]["rps"])
    p50 = max(_at(service["encode"], 1)["p50_ms"], _at(on["encode"], 1)["p50_ms"])
    ahead_of_mosec = at_least(
        f"null model: `POST /encode` req/s at {top} clients over mosec's (one worker); stretch: ahead at no more "
        "server CPU per request",
        encode["rps"] / mosec_encode["rps"],
        0.8,
        1.0,
    )
    ahead_of_mosec["stretch_met"] &= encode["server_cpu_ms"] <= mosec_encode["server_cpu_ms"]
    return [
        at_most(
            f"null model: `POST /encode` (one raw PNG) at {top} clients, server CPU ms/request (mosec: "
            f"{mosec_encode['server_cpu_ms']:.3f})",
            encode["server_cpu_ms"],
            0.12,
        ),
        ahead_of_mosec,
        at_least(
            f"null model: `POST /decode` of {DECODE_ROWS} latents to npy at {decode_clients} clients, req/s over "
            "mosec's with two workers",
            _at(service["decode"], decode_clients)["rps"] / _at(mosec["2"]["decode"], decode_clients)["rps"],
            1.0,
        ),
        at_least(
            f"one client: `POST /encode` req/s over the peer nearest to it ({slowest}; each on the same model and "
            "request)",
            one[slowest][0]["rps"] / one[slowest][1]["rps"],
            1.0,
        ),
        at_most("one client: `POST /encode` p50 ms (the larger of the null and the shipped model)", p50, 1.0),
        at_least(
            f"`/sample?n={default['batch']}&format=npy` images/s at one client over onnxruntime's default options "
            f"({peer_model} decoder, batch {default['batch']}, in-process)",
            on["sample256_npy"]["images_per_s"] / default["rows_per_s"],
            0.9,
        ),
    ]


def rows(targets: list[dict[str, Any]]) -> list[str]:
    """The targets table of BENCHMARKS.md."""

    def met(t: dict[str, Any]) -> str:
        if not t["met"]:
            return "**no**"
        return "yes, stretch too" if t.get("stretch_met") else "yes"

    return [
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        *(f"| {t['figure']} | {measured(t['value'])} | {t['target']} | {met(t)} |" for t in targets),
    ]


def measured(value: float) -> str:
    """A figure as the targets table shows it: four significant digits below 1, so that a figure just over a
    target such as 0.12 never reads as the target itself."""
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
