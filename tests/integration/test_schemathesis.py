"""Schemathesis against the real server on the shipped models: generated requests, valid and invalid, from the
service's own OpenAPI document; no 5xx, every status, media type and body is one the document declares, and
what the document calls invalid is refused.

Bounded (EXAMPLES requests per operation and mode: a few hundred in all, well under a minute on two cores) and
derandomized, so that a failure reproduces on the next run. Schemathesis' pytest plugin does not run under
pytest 9 (it reads a private attribute that pytest removed), so the operations are driven through its Python
API: one Hypothesis run per operation, every operation's failures reported together, each with a curl command.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from .server import ROOT, running_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # an invalid request (by the document) must get a 4xx, not a 200
]
# A request invalid by the document must get a 4xx; 413 counts too (an invalid request that is also too large).
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 406, 409, 413, 415, 422]}}}
)
EXAMPLES = 30
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failing request is reported as it came
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    # Small limits: generated counts stay cheap, and requests over them are generated and must be refused.
    env = {"VAE_MAX_N": "16", "VAE_MAX_LATENTS": "32", "VAE_MAX_IMAGES": "8", "VAE_MAX_SAMPLES": "4"}
    with running_server(ROOT / "models", env) as url:
        yield url


def _run(operation: schemathesis.APIOperation, mode: GenerationMode, statuses: Counter[int]) -> None:
    @BOUNDED
    @given(case=operation.as_strategy(mode))
    def requests(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        statuses[response.status_code] += 1

    try:
        requests()
    except Unsatisfiable:  # nothing to make invalid: GET /health has no parameter and no body
        assert mode is GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_document(base_url: str, mode: GenerationMode) -> None:
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)
    results = list(api.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), [r.err() for r in results if not isinstance(r, Ok)]
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) >= 10, [op.label for op in operations]
    failures, statuses = [], Counter[int]()
    for operation in operations:
        try:
            _run(operation, mode, statuses)
        except Exception as e:  # one operation's failure must not hide another's
            failures.append(f"--- {operation.label} ({mode.value}) ---\n{e}")
    assert not failures, "\n\n".join(failures)
    print(f"{mode.value}: {statuses.total()} requests, by status {dict(sorted(statuses.items()))}")
    assert statuses.total() >= 5 * len(operations) and (200 in statuses or mode is GenerationMode.NEGATIVE)
