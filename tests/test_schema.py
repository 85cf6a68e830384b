"""Property-based tests of the REST API from its own OpenAPI schema (Schemathesis), against the app
served on 127.0.0.1: no 5xx, and every status, header, content type and body as the schema says."""
from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)


from rag.serving.service import Service

from conftest import TEST_DATA, serve_app

pytestmark = pytest.mark.slow  # fuzzes the served app over HTTP

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def live_service(tmp_path_factory):
    """The tiny corpus, writes open (loopback, no token), so uploads, deletes and restores really run."""
    tmp = tmp_path_factory.mktemp("schema")
    shutil.copytree(TEST_DATA / "tiny", tmp / "data")
    svc = Service(tmp / "data", tmp / "index", feedback_dir=tmp / "feedback")
    svc.start()
    with serve_app(svc) as url:
        yield svc, url


@pytest.fixture(scope="module")
def api_schema(live_service):
    _, url = live_service
    return schemathesis.openapi.from_url(url + "/openapi.json").include(path_regex="^/api/")


# Schemathesis's own pytest plugin does not run under pytest 9 (it reaches for Function._nodeid), so each
# operation's strategy is drawn by hypothesis directly; the list is checked against the schema below.
OPERATIONS = [("POST", "/api/search"), ("POST", "/api/ask"), ("POST", "/api/feedback"), ("POST", "/api/documents"),
              ("DELETE", "/api/documents/{name}"), ("POST", "/api/documents/restore"), ("GET", "/api/documents/kept"),
              ("GET", "/api/health")]


def test_every_operation_is_fuzzed(api_schema):
    listed = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if not (mode is GenerationMode.NEGATIVE and m == "GET")]  # the GETs take no input to get wrong


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_api_keeps_to_its_schema(api_schema, method, path, mode):
    operation = api_schema[path][method]
    checks = CHECKS if mode is GenerationMode.NEGATIVE else CHECKS[:-1]

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(checks=checks)

    run()


def test_the_fuzzed_corpus_is_still_whole(live_service):
    """Runs after the schema tests: whatever they uploaded or removed, the index is consistent."""
    import rag

    svc, _ = live_service
    assert rag.Retriever.check(svc.index_dir) == []
    assert svc.ready and svc.search("九江", k=1)
