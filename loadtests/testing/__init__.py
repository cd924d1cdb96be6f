"""Test doubles for the load tests (no Locust imported here)."""
