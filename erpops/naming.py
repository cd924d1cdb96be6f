"""The naming contract of a stack: the fixed names of its objects, its ports, and the labels every object carries.

Pure: no Pulumi, no I/O. The Pulumi program (infra/) names and labels its objects from here; the chart's
values (erpops.helm_values), the inventory (playbooks/inventory_from_spec.py), the health checks and the
patch driver find them by the same names. Every name is fixed per stack (no auto-naming).
"""

from __future__ import annotations

from dataclasses import dataclass

from erpops.spec import Sized, Spec

POSTGRES_PORT = 5432
REDIS_PORT = 6379
ODOO_HTTP_PORT = 8069
ODOO_WEBSOCKET_PORT = 8072


@dataclass(frozen=True)
class Refs:
    """Names of the objects of one stack: Services, Secrets (name + key), ServiceAccounts, buckets."""

    stack: str
    namespace: str
    # Odoo (helm/odoo, release `odoo_release`): object names are <release>-<component>
    odoo_release: str
    odoo_web_service: str
    odoo_web_sa: str
    odoo_cron_sa: str
    odoo_modules_sa: str
    odoo_admin_secret: str
    odoo_admin_key: str
    # PostgreSQL (CloudNativePG)
    pg_cluster: str
    pg_rw_service: str
    pg_app_secret: str  # made by CloudNativePG: keys username, password, uri, ...
    pg_owner: str
    pooler: str  # the Pooler and its Service share this name
    scheduled_backup: str
    # Redis
    redis_service: str
    redis_sa: str
    redis_secret: str
    redis_password_key: str
    redis_prefix: str
    # Object storage: CloudNativePG's Secret (barman, backup bucket only); Odoo's own (fs_attachment,
    # filestore bucket only) exists only in filestore mode object-storage. Both use the same two keys.
    s3_secret: str
    s3_access_key_id_key: str
    s3_secret_access_key_key: str
    filestore_bucket: str
    backup_bucket: str
    odoo_s3_secret: str = "odoo-object-storage"  # noqa: S105 (a Secret's name)
    # filestore mode shared-volume: the ReadWriteMany claim the program creates
    filestore_claim: str = "odoo-filestore"
    # outgoing mail: the Secret holding the SMTP password
    smtp_secret: str = "odoo-smtp"  # noqa: S105 (a Secret's name)
    smtp_password_key: str = "smtp-password"  # noqa: S105 (a Secret's key)


def refs_for(sized: Sized) -> Refs:
    """Every name is fixed per stack (no auto-naming), so runbooks and health checks can rely on them."""
    release = "odoo"
    cluster = "odoo-db"
    storage = sized.spec.object_storage
    return Refs(
        stack=sized.stack,
        namespace=sized.namespace,
        odoo_release=release,
        odoo_web_service=f"{release}-web",
        odoo_web_sa=f"{release}-web",
        odoo_cron_sa=f"{release}-cron",
        # not <release>-modules: the chart's hook ServiceAccount had that name, and an object the chart
        # deletes on its next update must not be one the program has just adopted
        odoo_modules_sa=f"{release}-module-job",
        odoo_admin_secret=f"{release}-admin",
        odoo_admin_key="admin-password",
        pg_cluster=cluster,
        pg_rw_service=f"{cluster}-rw",
        pg_app_secret=f"{cluster}-app",
        pg_owner="odoo",
        pooler=f"{cluster}-pooler-rw",
        scheduled_backup=f"{cluster}-scheduled",
        redis_service="redis",
        redis_sa="redis",
        redis_secret="redis-auth",  # noqa: S106 (a Secret's name or key, not a value)
        redis_password_key="redis-password",  # noqa: S106 (a Secret's name or key, not a value)
        # one Redis per stack already, the prefix keeps sessions apart should two stacks ever share one
        redis_prefix=f"erpops-{sized.stack}",
        s3_secret="object-storage-credentials",  # noqa: S106 (a Secret's name or key, not a value)
        s3_access_key_id_key="access-key-id",
        s3_secret_access_key_key="secret-access-key",  # noqa: S106 (a Secret's name or key, not a value)
        filestore_bucket=storage.filestore_bucket,
        backup_bucket=storage.backup_bucket,
    )


def stack_labels(refs: Refs) -> dict[str, str]:
    """The labels every object of the stack carries (the program's own and the module Job's)."""
    return {"app.kubernetes.io/part-of": "erpops", "app.kubernetes.io/managed-by": "pulumi",
            "erpops.io/stack": refs.stack}


@dataclass(frozen=True)
class BackupTarget:
    """Where a stack's backup sets live when no --target names another place."""

    url: str  # s3://<backup_bucket>/<stack>
    bucket: str
    prefix: str
    endpoint_url: str | None  # the S3-compatible service's endpoint; None on AWS
    region: str | None


def stack_backup_target(spec: Spec, stack: str) -> BackupTarget:
    """The stack's backup target: its spec's backup bucket, prefixed by the stack's name. The backup
    commands, patch, the health check of the backups and the Ansible inventory all ask here."""
    storage = spec.object_storage
    return BackupTarget(url=f"s3://{storage.backup_bucket}/{stack}", bucket=storage.backup_bucket, prefix=stack,
                        endpoint_url=storage.endpoint if storage.mode == "s3-compatible" else None,
                        region=storage.region)
