"""Every endpoint driven from the app's own `/openapi.json` with generated requests (schemathesis).

The Flask app is called in-process (WSGI) against the real embedded PostgreSQL and Redis.
Each operation gets schema-valid and schema-invalid requests, with and without the admin
token: no answer may be a 5xx, every status must be documented, every body must match the
schema of its status and content type. The examples are derandomized, so a run is repeatable
and bounded; the number of requests is printed and must reach MIN_REQUESTS.
"""

from __future__ import annotations

import json

import pytest
from helpers import ADMIN_TOKEN, WEBHOOK_SECRET, load_and_embed
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from tools import need_module

schemathesis = need_module("schemathesis")
from schemathesis.checks import (  # noqa: E402  (after the import check)
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]
EXAMPLES = 30  # per operation, generation mode and credential
MIN_REQUESTS = 1000
NUL = "\\u0000"  # as json.dumps writes it
# Refusals of schema-valid requests that JSON Schema cannot express; each is in its field's description.
INEXPRESSIBLE = {"POST /api/documents": ("the same id appears twice in one request",),
                 "POST /api/rag/query": ("is neither the baseline",),  # the pair is the registry's, not the schema's
                 "POST /api/rollout/stage": ("the baseline and the candidate must be two different versions",)}
CREDENTIALS = {"anonymous": {}, "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}


def run_operation(operation, mode: GenerationMode, headers: dict[str, str], calls: list) -> None:
    if headers and operation.label == "POST /api/alerts/webhook":
        headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}  # the webhook's own secret

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers or None))
    def check(case):
        response = case.call()
        calls.append((operation.label, response.status_code))
        if NUL in json.dumps([case.body, case.query, case.path_parameters, case.headers], default=str):
            # schema-valid, but text PostgreSQL cannot store: refused (400, or 401/403 for a body sent without
            # valid credentials, which is not read; or 404 for a path naming nothing there is)
            refusals = (400, 401, 403, 404) if case.path_parameters else (400, 401, 403)
            assert response.status_code in refusals, (case.as_curl_command(), response.text)
            case.validate_response(response, checks=CHECKS, excluded_checks=[positive_data_acceptance])
        elif response.status_code == 400 and any(refusal in response.text
                                                  for refusal in INEXPRESSIBLE.get(operation.label, ())):
            case.validate_response(response, checks=CHECKS, excluded_checks=[positive_data_acceptance])
        elif response.status_code == 413:  # a documented size limit refuses the body whatever its schema
            case.validate_response(response, checks=CHECKS,
                                   excluded_checks=[positive_data_acceptance, negative_data_rejection])
        else:
            case.validate_response(response, checks=CHECKS)

    check()


def test_every_endpoint_answers_as_documented_to_generated_requests(app, runtime):
    load_and_embed(runtime)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    calls: list[tuple[str, int]] = []
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for credential, headers in CREDENTIALS.items():
                try:
                    run_operation(operation, mode, headers, calls)
                except Unsatisfiable:  # no parameters and no body: nothing schema-invalid to send
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all reported together
                    failures.append(f"{operation.label} ({mode.value}, {credential}): {exc}")
    statuses = sorted({status for _, status in calls})
    print(f"schemathesis: {len(calls)} requests over {len(operations)} operations, statuses {statuses}, "
          f"{len(failures)} failing")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= MIN_REQUESTS
    assert max(statuses) < 500
