"""Shared pytest setup. The real-service fixtures (pg, redis_server, s3) live in tests/fixtures_local.py."""

pytest_plugins = ["tests.fixtures_local"]
