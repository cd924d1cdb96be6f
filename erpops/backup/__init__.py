"""Backups of Odoo databases, one module per part of the work:

- `engine`: take a set (database dump and filestore at the same time, manifest last) or import an Odoo zip;
  re-exports the package's API for callers that import it from there;
- `dump`: the snapshot session, the facts read in it, pg_dump as a stream, the side databases;
- `filestore`: the content-addressed filestore copied into a target and written back;
- `manifest` (pure) and `sets` (finding sets, reading their manifests);
- `storage`: file:// and s3:// targets;
- `restore` (pre-flight, build aside, swap, roll back; loading a dump) and `verify`;
- `neutralize`, `untrusted` (screened restores), `interop`/`odoozip` (Odoo's zip format);
- `retention`, `lease`, `leftovers`, `scratch`, `drill`, `rehearse`, `commands` (the CLI).

No module uses another's `_private` names (tests/unit/test_private_names.py).
"""
