"""/openapi.json cannot drift from the routes: every route is documented and every documented path exists."""

from openapi_spec_validator import validate

from rollout.api.openapi import openapi_path


def routes(app):
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((openapi_path(rule.rule), method.lower()))
    return found


def documented(document):
    return {(path, method) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi(client):
    document = client.get("/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_is_documented_and_nothing_else(app, client):
    document = client.get("/openapi.json").get_json()
    assert documented(document) == routes(app)


def test_request_bodies_are_the_models_that_validate_them(client):
    document = client.get("/openapi.json").get_json()
    query = document["paths"]["/api/rag/query"]["post"]
    schema_ref = query["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    model = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert model["required"] == ["query"]
    assert model["properties"]["k"]["maximum"] == 50 and model["additionalProperties"] is False
    assert {"400", "413", "503"} <= set(query["responses"])


def test_admin_operations_declare_the_bearer_token(client):
    document = client.get("/openapi.json").get_json()
    put = document["paths"]["/api/flags/{name}"]["put"]
    assert put["security"] == [{"adminToken": []}]
    assert {"401", "403", "503"} <= set(put["responses"])


def test_every_operation_documents_bad_input_and_an_unavailable_dependency(client):
    """Any request's text is checked (400) and PostgreSQL or Redis can be down for any of them (503)."""
    document = client.get("/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert {"400", "503"} <= set(operation["responses"]), (method, path)
