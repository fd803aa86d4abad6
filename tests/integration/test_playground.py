"""The playground (GET /playground, service/static/) in a real headless Chromium against a real uvicorn process.

Playwright drives Debian's Chromium at /usr/bin/chromium (`.ci/chromium.sh` installs it in CI; never run
`playwright install`, which downloads a browser build of its own). Without it the browser tests skip, except
with CI set, where they fail: a CI run that skipped them would prove nothing. VAE_WRITE_SCREENSHOTS=1
(`make readme-images`) writes the page, after sampling, reconstructing and interpolating, to docs/playground.png
(and fails too when there is no browser to do it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from ..tiny_models import build_model
from .server import ROOT, running_server, start
from .test_shipped_models import MANIFESTS, MODELS, first

pytestmark = pytest.mark.skipif(
    not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` trains and exports the shipped models"
)
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "playground.png"
KEY = "playground-test-key"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with running_server(MODELS) as url:
        yield url


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") or os.environ.get("VAE_WRITE_SCREENSHOTS") == "1":  # must run: fail, do not skip
        pytest.fail(f"{reason}; .ci/chromium.sh installs Debian's Chromium (CI runs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[test]'")
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium (or run .ci/chromium.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page, and what it did that a user would not see: console errors, uncaught exceptions, other hosts."""

    page: Any
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    response: Any = None  # of the page's own load


@contextmanager
def opened(browser: Any, base: str, path: str = "/") -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watched = Watched(page)

    def console(message: Any) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))

    def request(r: Any) -> None:
        watched.requests.append(r)
        if not r.url.startswith((f"{base}/", "data:", "blob:")):
            watched.foreign.append(r.url)

    page.on("request", request)
    try:
        watched.response = page.goto(base + path)
        yield watched
    finally:
        context.close()


def wait_for_models(page: Any) -> None:
    # Locators, not wait_for_function: its polling evaluates strings, which the page's CSP (no eval) refuses.
    page.locator("#model option").first.wait_for(state="attached")


def shown(page: Any, selector: str) -> dict[str, int]:
    """Wait until the <img> holds a decoded image (failing with the page's error, if it shows one); its size."""
    page.locator(f"{selector}.shown, #error:not([hidden])").first.wait_for()  # .shown: set once it has loaded
    assert page.is_hidden("#error"), page.text_content("#error")
    return page.eval_on_selector(selector, "i => ({width: i.naturalWidth, height: i.naturalHeight})")


SEVEN = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.85)], [(0.38, 0.52), (0.68, 0.52)]]  # strokes, in canvas fractions
TWO = [[(0.3, 0.3), (0.45, 0.18), (0.65, 0.22), (0.68, 0.4), (0.3, 0.8), (0.72, 0.8)]]


def draw(page: Any, canvas: str = "#pad-a", strokes: list[list[tuple[float, float]]] = SEVEN) -> None:
    """Draw with the mouse: each stroke pressed down at its first point and dragged through the others."""
    box = page.locator(canvas).bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=10)
        page.mouse.up()


def sent_image(post_data: str) -> np.ndarray:
    """The first image of a JSON body the page sent: a data: URL of a PNG, as uint8 [H, W] (or [H, W, C])."""
    url = json.loads(post_data)["images"][0]
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L"))


def test_the_page_and_its_files_are_served_with_a_strict_policy_and_kept_out_of_the_api_document(base):
    with httpx.Client(base_url=base) as http:
        root = http.get("/")
        assert root.status_code == 307 and root.headers["location"] == "playground"
        page = http.get("/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
        assert "http" not in page.text.replace('lang="en"', "")  # no absolute URL: nothing from another host
        for name, media in (("playground.js", "text/javascript"), ("playground.css", "text/css")):
            asset = http.get(f"/playground/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
            assert "content-security-policy" in asset.headers
        missing = http.get("/playground/secrets.txt")
        assert missing.status_code == 404 and "playground.js" in missing.json()["detail"]
        paths = http.get("/openapi.json").json()["paths"]
        assert not {"/", "/playground", "/playground/{asset}"} & set(paths)


def test_the_page_loads_clean_samples_and_reconstructs_a_drawn_digit(browser, base):
    default = httpx.get(f"{base}/models").json()
    model = next(m for m in default["models"] if m["name"] == default["default"])
    with opened(browser, base) as watched:
        page = watched.page
        assert page.url == f"{base}/playground"  # / redirects to the page
        wait_for_models(page)
        assert page.input_value("#model") == model["name"]
        assert page.locator("#capabilities li").count() == len(model["capabilities"])

        page.fill("#sample-seed", "42")  # the README's picture stays the same from run to run
        page.click("#sample")
        grid = shown(page, "#sample-image")
        assert grid["width"] > 2 * model["image"]["width"]  # a grid of several samples
        assert "seed 42" in page.text_content("#sample-note")

        draw(page)
        with page.expect_request(lambda r: r.url.startswith(f"{base}/reconstruct")) as request:
            page.click("#reconstruct")
        digit = sent_image(request.value.post_data)
        assert digit.shape == (model["image"]["height"], model["image"]["width"])
        assert digit.max() > 200 and digit.mean() < 80  # white strokes on black, as MNIST
        assert shown(page, "#recon-image") == {"width": model["image"]["width"], "height": model["image"]["height"]}
        page.wait_for_selector("#latent .bars")
        assert page.locator("#latent .bars span").count() == model["latent_dim"]
        score = page.text_content("#score")
        assert ("log p(x)" in score) if model["capabilities"]["encode_samples"] else ("squared error" in score)
        assert "percentile" in score and "anomalous" in score
        assert page.is_hidden("#error")

        draw(page, "#pad-b", TWO)
        page.click("#interpolate")
        assert shown(page, "#interpolate-image")["width"] >= 10 * model["image"]["width"]  # 10 steps by default
        if os.environ.get("VAE_WRITE_SCREENSHOTS") == "1":
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        assert watched.errors == []
        assert watched.foreign == []


def test_capabilities_decide_what_is_enabled_and_problems_are_shown_readably(browser, base):
    ae = first(lambda m: not m.stochastic and not m.conditional)
    cvae = first(lambda m: m.conditional)
    with opened(browser, base, "/playground") as watched:
        page = watched.page
        wait_for_models(page)
        page.select_option("#model", ae)
        assert page.is_disabled("#generate") and page.is_hidden("#label-row")
        assert page.is_checked("#traverse-around-a") and page.is_disabled("#traverse-around-a")  # no prior mean

        page.select_option("#model", cvae)
        assert page.is_enabled("#generate") and page.is_visible("#label-row")
        page.select_option("#label", "3")
        page.fill("#sample-n", "4")
        page.click("#generate")
        shown(page, "#sample-image")
        assert "label 3" in page.text_content("#sample-note")

        draw(page, "#pad-a")
        page.click("#reconstruct")
        # p(y|x) of the drawing, most probable first: the drawn seven ranks the label "7" among the listed five.
        ranked = page.locator("#label-probabilities").text_content(timeout=30000) or ""
        listed = [part.rsplit(" ", 1)[0] for part in ranked.split(", ")]
        assert len(listed) == 5 and "7" in listed and ranked.endswith("%")
        draw(page, "#pad-b", TWO)
        page.fill("#steps", "6")
        page.click("#interpolate")
        assert shown(page, "#interpolate-image")["width"] >= 6 * MANIFESTS[cvae].image.width
        page.click("#z-origin")
        shown(page, "#decoded-image")
        page.click("#traverse")
        shown(page, "#traverse-image")
        assert watched.errors == [] and watched.foreign == []

        page.fill("#sample-temperature", "1e9")  # over VAE_MAX_TEMPERATURE: a 422 problem
        page.click("#generate")
        page.wait_for_selector("#error", state="visible")
        assert page.text_content("#error-title") == "422 Invalid input"
        assert "temperature" in page.text_content("#error-detail")


def test_the_page_is_open_and_sends_the_key_entered_when_the_service_needs_one(browser):
    with running_server(MODELS, env={"VAE_API_KEY": KEY}) as base, opened(browser, base, "/playground") as watched:
        page = watched.page
        assert watched.response.status == 200
        page.wait_for_selector("#error", state="visible")  # GET /models without a key
        assert page.text_content("#error-title") == "401 Unauthorized"
        assert "API key field" in page.text_content("#error-detail")

        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
        wait_for_models(page)
        assert page.is_hidden("#error")
        page.click("#sample")
        shown(page, "#sample-image")
        sample = next(r for r in watched.requests if r.url.startswith(f"{base}/sample"))
        assert sample.headers.get("x-api-key") == KEY


def test_answers_for_a_model_no_longer_selected_are_not_shown(browser, base):
    """A model chosen while pad A's requests are out: their answers (the other model's code, of another length)
    are dropped, and "From A's code" encodes the drawing again with the model now selected."""
    vae = first(lambda m: m.stochastic and not m.conditional)
    cvae = first(lambda m: m.conditional)
    with opened(browser, base) as watched:
        page = watched.page
        wait_for_models(page)
        page.select_option("#model", vae)
        draw(page)
        held: list[Any] = []  # the requests, kept from the server until the other model is selected
        pattern = re.compile(r"/(reconstruct|encode|score)\?")
        page.route(pattern, lambda route: held.append(route))
        page.click("#reconstruct")
        while len(held) < 3:
            page.wait_for_timeout(20)
        page.select_option("#model", cvae)
        for route in held:
            route.continue_()
        page.unroute(pattern)
        page.locator("#reconstruct:not(.busy)").wait_for()
        assert page.locator("#recon-image.shown, #latent .bars").count() == 0, "the other model's answers are shown"
        page.click("#z-from-a")
        shown(page, "#decoded-image")
        assert page.locator("#sliders input").count() == MANIFESTS[cvae].latent_dim
        assert watched.errors == []


def test_a_page_opened_while_the_models_load_waits_for_them_with_its_buttons_disabled(browser, tmp_path):
    for i in range(24):  # enough models that loading them takes seconds, so the page opens meanwhile
        build_model(tmp_path / f"small-{i}", name=f"small-{i}", kind="vae", seed=i, size=28)
    process, base, log = start(tmp_path, {"VAE_MAX_BATCH_ROWS": "4096", "VAE_WARM_BUCKETS": "all"})
    try:
        deadline = time.monotonic() + 60
        while True:  # as soon as the port answers
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.02)
        with opened(browser, base, "/playground") as watched:
            page = watched.page
            assert page.is_disabled("#sample") and page.is_disabled("#reconstruct")
            page.locator("#model-summary", has_text="still loading").wait_for()
            assert page.is_disabled("#sample") and page.is_hidden("#error")
            page.locator("#model option").first.wait_for(state="attached", timeout=60_000)  # no reload needed
            statuses = [r.response().status for r in watched.requests if r.url.endswith("/models")]
            assert statuses[0] == 503 and statuses[-1] == 200, statuses
            assert page.is_enabled("#sample") and page.is_hidden("#error")
    finally:
        process.terminate()
        process.wait(10)
        log.unlink(missing_ok=True)


def test_the_model_list_follows_loads_and_unloads_made_elsewhere(browser, tmp_path):
    """Models unloaded and loaded by another client: the list catches up when it is opened (or the page is looked at
    again), and an action on a model unloaded meanwhile gets its 404 and an updated list."""
    for name in ("tiny-a", "tiny-b"):
        build_model(tmp_path / name, name=name, kind="vae", seed=1, size=28)
    explicit = {"VAE_MODEL_CONTROL": "explicit"}
    with running_server(tmp_path, env=explicit) as base, opened(browser, base, "/playground") as watched:
        page = watched.page
        wait_for_models(page)
        options = page.locator("#model option")
        page.select_option("#model", "tiny-b")
        page.click("#sample")
        shown(page, "#sample-image")
        listed = sum(r.url.endswith("/models") for r in watched.requests)

        assert httpx.post(f"{base}/v2/repository/models/tiny-b/unload").status_code == 200
        page.click("#sample")  # tiny-b is gone: 404, and the list is asked again
        page.locator("#error:not([hidden])").wait_for()
        assert page.text_content("#error-title").startswith("404")
        page.locator("#model-summary", has_text="tiny-b is no longer served").wait_for()
        assert options.all_text_contents() == ["tiny-a (vae)"] and page.input_value("#model") == "tiny-a"
        page.click("#sample")
        shown(page, "#sample-image")

        build_model(tmp_path / "tiny-c", name="tiny-c", kind="vae", seed=2, size=28)
        assert httpx.post(f"{base}/v2/repository/models/tiny-c/load").status_code == 200
        page.focus("#pad-a")
        page.focus("#model")  # opening the list asks again; the selection and what it shows stay
        page.locator("#model option", has_text="tiny-c").wait_for(state="attached")
        assert options.all_text_contents() == ["tiny-a (vae)", "tiny-c (vae)"]
        assert page.input_value("#model") == "tiny-a" and page.locator("#sample-image.shown").count() == 1
        assert sum(r.url.endswith("/models") for r in watched.requests) == listed + 2
        page.select_option("#model", "tiny-c")
        page.click("#sample")
        shown(page, "#sample-image")
        assert watched.errors == [e for e in watched.errors if "404" in e]  # the refused request's console line
