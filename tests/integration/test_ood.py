"""The out-of-distribution test and the label-free conditional model, through a real server on the shipped models.

Both directions: digit models flag Fashion-MNIST clothing, the clothing model flags MNIST digits and crops of
photographs, and each keeps its own held-out images; a conditional model without a label gives -log p(x) summed over
its labels and p(y|x), on /score and /classify.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from ..fashion import require_fashion
from .server import running_server
from .test_shipped_models import MANIFESTS, MODELS, png

pytestmark = pytest.mark.skipif(not MANIFESTS, reason=f"no model in {MODELS} yet")
ENV = {"VAE_MAX_BATCH_ROWS": "512", "VAE_REQUEST_DEADLINE_MS": "120000"}
ROWS = 16384  # VAE_MAX_SCORE_ROWS: images x samples x labels per request


@pytest.fixture(scope="module")
def http():
    with running_server(MODELS, env=ENV) as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def fashion():
    """Fashion-MNIST as uint8 [N, 28, 28] with labels, and the rows of its own test split."""
    require_fashion()
    from training.data import load_dataset

    data = load_dataset("fashion")
    assert data.official_test is not None
    return data.images[:, 0], data.labels, data.official_test


def score(http: httpx.Client, model: str, images: np.ndarray, route: str = "/score", **params) -> list[dict]:
    """Every image scored in requests within the rows limit, two at a time."""
    m = MANIFESTS[model]
    per_image = params.get("samples", 64) * (len(m.labels) if m.kind == "cvae" else 1)
    batch = max(1, min(64, ROWS // per_image))

    def one(start: int) -> list[dict]:
        files = [("files", (f"{i}.png", png(im), "image/png")) for i, im in enumerate(images[start : start + batch])]
        r = http.post(route, params={"model": model, "seed": start, **params}, files=files)
        assert r.status_code == 200, r.text
        return r.json()["scores" if route == "/score" else "labels"]

    with ThreadPoolExecutor(2) as pool:
        return [s for part in pool.map(one, range(0, len(images), batch)) for s in part]


def flagged(scores: list[dict]) -> float:
    return float(np.mean([s["anomalous"] for s in scores]))


def held_out(images: np.ndarray, name: str, n: int) -> np.ndarray:
    return images[np.asarray(MANIFESTS[name].training.split.test_indices)[:n]]


def auroc(inside: list[float], outside: list[float]) -> float:
    """P(an outside score > an inside one), ties counted half: the area under the ROC curve."""
    a, b = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float((b > a).mean() + 0.5 * (b == a).mean())


def test_a_digit_model_flags_clothing_and_keeps_its_digits(http, mnist, fashion):
    images, _, test_rows = fashion
    clothes = images[test_rows[:200]]
    for name in ("mnist-vae", "mnist-ae"):
        inside, outside = score(http, name, held_out(mnist[0], name, 300)), score(http, name, clothes)
        assert flagged(outside) >= 0.95 and flagged(inside) <= 0.03, name
        assert auroc([s["ood"] for s in inside], [s["ood"] for s in outside]) >= 0.99
        assert all(s["ood_percentile"] is not None for s in inside + outside)


def test_the_clothing_model_flags_digits_and_keeps_its_clothes(http, mnist, fashion):
    images, _, _ = fashion
    inside = score(http, "fashion-cvae", held_out(images, "fashion-cvae", 300))
    digits = mnist[0][np.random.default_rng(0).choice(len(mnist[0]), 200, replace=False)]
    outside = score(http, "fashion-cvae", digits)
    assert flagged(outside) >= 0.90 and flagged(inside) <= 0.03
    assert auroc([s["ood"] for s in inside], [s["ood"] for s in outside]) >= 0.95
    assert all(s["pixel_nll"] is not None and s["complexity"] is not None for s in inside + outside)


def test_noise_inverted_images_and_photo_crops_are_flagged_by_the_clothing_model(http, fashion):
    from training.ood_report import photo_crops

    images, _, _ = fashion
    noise = np.random.default_rng(0).integers(0, 256, (60, 28, 28), dtype=np.uint8)
    inverted = 255 - held_out(images, "fashion-cvae", 60)
    # Smooth crops fill the frame a garment leaves black: explained about as well as clothes, but not like them.
    crops = np.round(photo_crops(60, np.random.default_rng(1))[:, 0] * 255).astype(np.uint8)
    for kind in (noise, inverted, crops):
        assert flagged(score(http, "fashion-cvae", kind, samples=16)) >= 0.95


def test_a_cvae_without_a_label_gives_p_x_and_p_y_given_x(http, mnist):
    digits, labels = (
        held_out(mnist[0], "mnist-cvae", 150),
        mnist[1][MANIFESTS["mnist-cvae"].training.split.test_indices][:150],
    )
    scores = score(http, "mnist-cvae", digits, samples=16)
    probs = np.array([[s["label_probabilities"][str(d)] for d in range(10)] for s in scores])
    assert np.allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == labels).mean() >= 0.95
    assert all(1.0 <= s["ess"] <= 16 * 10 for s in scores)
    # With a label the nll is -log p(x | label); without, -log p(x) = -log sum_y p(y) p(x|y) <= it + log 10 (the same
    # request but for the label: the same binarization and draws).
    given = score(http, "mnist-cvae", digits[:20], samples=16, label=labels[:20].tolist())
    free = score(http, "mnist-cvae", digits[:20], samples=16)
    for unlabelled, conditional in zip(free, given, strict=True):
        assert unlabelled["nll"] <= conditional["nll"] + math.log(10) + 1e-6
    classified = score(http, "mnist-cvae", digits[:20], route="/classify", samples=16, top=2)
    best = [max(s["label_probabilities"], key=s["label_probabilities"].get) for s in free]
    assert [c["label"] for c in classified] == best and [c["nll"] for c in classified] == [s["nll"] for s in free]
    assert all(len(c["top"]) == 2 and c["top"][0]["probability"] >= c["top"][1]["probability"] for c in classified)


def test_classify_takes_the_default_conditional_model_and_refuses_an_unconditional_one_and_too_many_rows(http):
    one = [("files", ("x.png", png(np.zeros((28, 28), np.uint8)), "image/png"))]
    r = http.post("/classify", files=one)  # no model named: the default conditional one, as /generate
    assert r.status_code == 200 and r.json()["model"] == http.get("/models").json()["default_conditional"]
    r = http.post("/classify", params={"model": "mnist-vae"}, files=one)
    assert r.status_code == 409 and "conditional" in r.json()["detail"]
    many = one * 30  # 30 x 64 x 10 rows > VAE_MAX_SCORE_ROWS
    r = http.post("/classify", params={"model": "mnist-cvae"}, files=many)
    assert r.status_code == 422 and "VAE_MAX_SCORE_ROWS" in r.json()["detail"]
    r = http.post("/score", params={"model": "mnist-cvae"}, files=many)
    assert r.status_code == 422 and "labels" in r.json()["detail"]


def test_the_client_classifies_more_images_than_one_request_takes(http, mnist):
    from vae_client import Client

    digits, labels = held_out(mnist[0], "mnist-cvae", 60), held_out(mnist[1], "mnist-cvae", 60)
    with Client(str(http.base_url), timeout=120) as client:
        result = client.classify(digits, model="mnist-cvae", samples=32, seed=5, top=3)  # 60 x 32 x 10 rows: 2 requests
        scores = client.score(digits[:2], model="mnist-cvae", samples=32)
    assert len(result.labels) == 60 and all(len(t) == 3 for t in result.top)
    assert np.mean([label == str(y) for label, y in zip(result.labels, labels, strict=True)]) >= 0.9
    assert (result.probability > 0).all() and (result.ess >= 1).all() and np.isfinite(result.nll).all()
    assert (result.probability <= 1).all()  # a sure label's exp(log p) can round a few ulps past 1
    assert all(0 <= p <= 1 for s in scores.scores for p in (s.label_probabilities or {}).values())
    first = scores.scores[0]
    assert first.label_probabilities is not None and first.ood is not None and first.pixel_nll is not None


def test_the_manifests_carry_figures_measured_through_the_service_that_meet_the_targets():
    """`make ood-report` wrote them (training/ood_report.py); the tests above measure smaller samples again."""
    for m in MANIFESTS.values():
        ood = m.metrics.ood
        assert ood is not None and ood.held_out_flagged is not None and ood.held_out_flagged <= 0.02, m.name
        checks = {c.dataset: c for c in ood.checks}
        assert checks["uniform noise"].flagged >= 0.95 and checks["held-out images inverted"].flagged >= 0.95, m.name
        assert checks["photograph crops"].flagged >= 0.95, m.name
        if m.training.dataset == "mnist":
            clothes = checks["Fashion-MNIST test images"]
            assert clothes.auroc >= 0.99 and clothes.flagged >= 0.95, m.name
        else:
            digits = checks["MNIST digits"]
            assert digits.auroc >= 0.95 and digits.flagged >= 0.90 and digits.auroc_nll is not None, m.name
    cvae, vae = MANIFESTS["mnist-cvae"].metrics, MANIFESTS["mnist-vae"].metrics
    assert cvae.marginal_nll <= cvae.iw_bound + math.log(10) and cvae.marginal_nll < vae.iw_bound
    assert cvae.label_accuracy >= 0.95
    fashion = MANIFESTS["fashion-cvae"].metrics
    # The fitted prior's samples are judged by the project's classifier (its accuracy on real test images beside it).
    assert fashion.classifier_accuracy >= 0.9 and fashion.label_agreement_fitted >= 0.9
    assert fashion.frechet_floor < fashion.frechet_distance_fitted < fashion.frechet_distance
