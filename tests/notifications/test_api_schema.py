"""The OpenAPI schema is served, valid, and describes the API-key scheme."""

import pytest

pytestmark = pytest.mark.django_db


def test_schema_is_served_without_a_key_and_names_every_route(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "Authorization"
    for path in [
        "/api/v1/notifications/",
        "/api/v1/notifications/bulk/",
        "/api/v1/notifications/{notification_id}/",
        "/api/v1/recipients/{external_id}/",
        "/api/v1/recipients/{external_id}/feed/",
    ]:
        assert path in schema["paths"], path


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_are_served_whatever_key_comes_along(client, path):
    response = client.get(path, HTTP_AUTHORIZATION="Api-Key revoked.or-wrong")
    assert response.status_code == 200


def test_schema_generation_has_no_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
