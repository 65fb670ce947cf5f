"""deploy/: the replicas' config is valid, and names what compose.yaml provides."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_replicas_config_loads_and_takes_its_database_from_the_environment() -> None:
    url = "postgresql://gateway@postgres:5432/gateway"
    settings = load_settings(DEPLOY / "gateway.toml", env={"PARALLEL_GATEWAY_DATABASE": url})
    assert settings.storage.database == url
    assert settings.upstream.api_key_file == "/run/secrets/parallel_api_key"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)  # noqa: S104


def test_compose_provides_what_the_config_reads() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    for needed in (
        "PARALLEL_GATEWAY_DATABASE: postgresql://gateway@postgres:5432/gateway",
        "PGPASSFILE: /run/secrets/pgpass",
        "- parallel_api_key",
        "./gateway.toml:/etc/parallel-gateway/config.toml:ro",
        'command: ["migrate"]',
        "condition: service_completed_successfully",
    ):
        assert needed in compose
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "server gateway-1:8080" in nginx
    assert "server gateway-2:8080" in nginx
