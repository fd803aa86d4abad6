"""client/vae_client/bulk.py: how large work is cut into requests within the service's limits."""

from __future__ import annotations

import numpy as np
from vae_client import bulk

DOCUMENT = {
    "default": "m",
    "default_conditional": None,
    "models": [{"name": "m", "latent_dim": 4, "image": {"channels": 1, "height": 8, "width": 8}}],
    "limits": {"max_images": 3, "max_latents": 10, "max_n": 5, "max_body_bytes": 4096, "max_response_bytes": 4096},
}


def test_spans_keep_order_and_bounds():
    assert bulk.spans([1] * 7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert bulk.spans([40, 40, 40, 10], 10, max_bytes=80) == [slice(0, 2), slice(2, 4)]
    assert bulk.spans([500, 1], 10, max_bytes=100) == [slice(0, 1), slice(1, 2)]  # too large alone: alone
    assert bulk.spans([], 3) == [slice(0, 0)]


def test_decode_is_cut_by_rows_answer_bytes_and_joined_in_order():
    limits = bulk.Limits.from_models(DOCUMENT)
    job = bulk.decode(limits, np.zeros((25, 4)), None, None)
    # An answer of 8x8 float32 images within 90 % of 4096 bytes: 14 rows; max_latents allows 10.
    assert job.rows == [10, 10, 5] and all(c.path == "/decode" for c in job.calls)
    parts = [np.full((r, 1, 8, 8), i, np.float32) for i, r in enumerate(job.rows)]
    joined = job.join(parts)
    assert joined.shape == (25, 1, 8, 8) and joined[9, 0, 0, 0] == 0 and joined[10, 0, 0, 0] == 1


def test_per_row_labels_and_seeds_follow_their_requests():
    limits = bulk.Limits.from_models(DOCUMENT)
    job = bulk.sample(limits, 12, 7, None, list(range(12)), None, None)
    assert job.rows == [5, 5, 2]
    seeds = [dict(c.params)["seed"] for c in job.calls]
    assert seeds == ["7", "8", "9"]
    assert [v for k, v in job.calls[1].params if k == "label"] == [str(i) for i in range(5, 10)]
    one_label = bulk.sample(limits, 12, None, None, 3, None, None)
    assert all([v for k, v in c.params if k == "label"] == ["3"] for c in one_label.calls)


def test_a_job_without_a_seed_draws_one_for_all_its_requests():
    """The seed a joined result reports (its first request's) must repeat every request of the job."""
    limits = bulk.Limits.from_models(DOCUMENT)
    images = np.zeros((7, 1, 8, 8), np.uint8)
    for job in (
        bulk.sample(limits, 12, None, None, None, None, None),
        bulk.encode(limits, images, 2, None, None, None),
        bulk.score(limits, images, 2, None, None, None),
    ):
        seeds = [int(dict(c.params)["seed"]) for c in job.calls]
        assert len(seeds) > 1 and seeds == [seeds[0] + i for i in range(len(seeds))]
    assert all("seed" not in dict(c.params) for c in bulk.encode(limits, images, None, None, None, None).calls)
    last = bulk.sample(limits, 12, 2**63 - 1, None, None, None, None)  # the seeds stay within what the service takes
    assert [dict(c.params)["seed"] for c in last.calls] == [str(2**63 - 1), "0", "1"]


def test_score_requests_hold_the_default_samples_the_service_says_for_every_label():
    labelled = {"name": "c", "latent_dim": 4, "image": {"channels": 1, "height": 8, "width": 8}, "labels": list("ab")}
    document = {**DOCUMENT, "models": [*DOCUMENT["models"], labelled], "default_conditional": "c"}
    document["limits"] = {**DOCUMENT["limits"], "max_images": 100, "max_score_rows": 160}
    images = np.zeros((25, 1, 8, 8), np.uint8)
    said = bulk.Limits.from_models({**document, "defaults": {"samples": 8}})
    assert said.default_samples == 8
    assert bulk.score(said, images, None, None, None, "c").rows == [10, 10, 5]  # 160 rows / (8 draws x 2 labels)
    assert bulk.classify(said, images, 20, None, None, None).rows == [4] * 6 + [1]  # K given: 160 / (20 x 2)
    older = bulk.Limits.from_models(document)  # a service that does not say it draws 64
    assert bulk.score(older, images, None, None, None, "m").rows == [2] * 12 + [1]
