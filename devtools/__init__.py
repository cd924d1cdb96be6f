"""Development checkers: run by the tests and by maintainers, never by an installed erpops.

- `podsecurity`: Pod Security Standards (baseline, restricted) and the house rules, on rendered pods.
- `helmdocs`: the helm/odoo README's parameter table, generated from values.yaml (`--check` for drift).
"""
