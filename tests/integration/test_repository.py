"""The model repository is confined to its folder, in a real `python -m service` process (issue 9, 7 and 8).

A model folder symlinked from outside the models folder is never served: refused and listed with the reason when
VAE_STRICT_MODELS is false, a refusal to start when it is true. An unreadable manifest refuses its folder only.
"""

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from ..service.payloads import png
from ..tiny_models import build_model, build_zoo
from .hostile import watch
from .server import run_to_exit, running_process, running_server


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """models/ with the tiny zoo, `evil` (a symlink to a model outside it) and `broken` (a manifest not in UTF-8)."""
    models = build_zoo(tmp_path / "models")
    build_model(tmp_path / "outside" / "evil", name="outside-vae")
    (models / "evil").symlink_to(tmp_path / "outside" / "evil")
    build_model(models / "broken", name="broken-vae")
    (models / "broken" / "manifest.json").write_bytes(b"\xff\xfe\x00{")
    return models


def test_an_outside_model_is_not_served_and_a_bad_manifest_costs_only_its_folder(repository, tmp_path):
    with running_server(repository, {"VAE_STRICT_MODELS": "false"}) as url:
        listing = httpx.get(f"{url}/models").json()
        assert sorted(m["name"] for m in listing["models"]) == ["tiny-ae", "tiny-cvae", "tiny-vae"]
        refused = {r["folder"]: r["reason"] for r in listing["refused"]}
        assert sorted(refused) == ["broken", "evil"]
        assert refused["evil"].startswith("evil: ") and "outside the models folder" in refused["evil"]
        assert refused["broken"].startswith("broken/manifest.json: ") and "UTF-8" in refused["broken"]
        assert str(tmp_path) not in httpx.get(f"{url}/models").text
        assert httpx.get(f"{url}/models/outside-vae").status_code == 404
        assert httpx.get(f"{url}/sample?model=outside-vae&n=1").status_code == 404
        files = httpx.get(f"{url}/models/tiny-vae").json()["files"]
        assert [files[role]["path"] for role in ("encoder", "decoder")] == ["encoder.onnx", "decoder.onnx"]


def test_strict_mode_refuses_to_start_naming_the_outside_folder(repository):
    (repository / "broken").rename(repository / "_broken")  # '_' folders are skipped: only `evil` is left to refuse
    code, output = run_to_exit(repository, {"VAE_STRICT_MODELS": "true"})
    assert code != 0
    assert "VAE_STRICT_MODELS=true" in output and "evil: " in output and "outside the models folder" in output


def _threads_and_rss_mib(pid: int) -> tuple[int, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return len(list(Path(f"/proc/{pid}/task").iterdir())), rss_kib / 1024


def test_150_unloads_and_loads_under_traffic_leave_threads_and_memory_where_they_were(tmp_path):
    env = {"VAE_MODEL_CONTROL": "explicit", "VAE_PROCESSES": "1"}
    with running_process(build_zoo(tmp_path / "models"), env) as (process, url):
        stop = threading.Event()
        answers: dict[int, int] = {}

        def traffic() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    r = client.post("/encode?model=tiny-vae", content=png(), headers={"Content-Type": "image/png"})
                    answers[r.status_code] = answers.get(r.status_code, 0) + 1

        clients = [threading.Thread(target=traffic) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            with httpx.Client(base_url=url, timeout=30) as control:

                def reload(times: int) -> None:
                    for _ in range(times):
                        assert control.post("/v2/repository/models/tiny-vae/unload").status_code == 200
                        assert control.post("/v2/repository/models/tiny-vae/load").status_code == 200

                reload(10)  # the start: pools that the first reloads start lazily (loading, closing) exist
                time.sleep(1)
                threads_before, rss_before = _threads_and_rss_mib(process.pid)
                reload(150)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        time.sleep(1)  # the last unloads' graphs close once their requests are done
        threads_after, rss_after = _threads_and_rss_mib(process.pid)
    print(
        f"150 reloads under load: threads {threads_before} -> {threads_after}, RSS {rss_before:.0f} -> "
        f"{rss_after:.0f} MiB, answers {answers}"
    )
    # 404 while it is unloaded; a request that found the model is answered by it, never cut off by the unload.
    assert set(answers) <= {200, 404} and answers.get(200, 0) > 0
    # A leak would grow with the cycles (150 of them); a pool's idle thread may come or go by one.
    assert threads_after <= max(threads_before * 1.1, threads_before + 1) and rss_after <= rss_before * 1.1


def test_hostile_names_are_refused_before_the_file_system_is_asked_and_undecodable_folders_are_listed(tmp_path):
    models = build_zoo(tmp_path / "models")
    env = {"VAE_MODEL_CONTROL": "explicit", "VAE_PROCESSES": "1"}
    with running_process(models, env) as (process, url), httpx.Client(base_url=url, timeout=30) as client:
        with watch(process, url) as seen:
            loads = [client.post(f"/v2/repository/models/{'m' * n}/load") for n in (300, 10_000)]
            # A folder whose name is not UTF-8 (a file system allows any bytes but '/' and NUL).
            strange = os.fsencode(models) + b"/caf\xe9-vae"
            build_model(Path(os.fsdecode(strange)), name="cafe-vae")
            indexed = client.post("/v2/repository/index")
            shutil.rmtree(strange)
            reindexed = client.post("/v2/repository/index")
        seen.assert_healthy()
    assert [r.status_code for r in loads] == [400, 400] and "255 bytes" in loads[0].text, loads[0].text
    assert indexed.status_code == 200 and reindexed.status_code == 200, (indexed.text, reindexed.text)
    assert "caf\\xe9-vae" in {entry["name"] for entry in indexed.json()}, indexed.text
    assert "caf\\xe9-vae" not in {entry["name"] for entry in reindexed.json()}
