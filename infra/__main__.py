"""erpops: one segregated Odoo environment per Pulumi stack. Reads the spec once, builds the components,
exports one `ops` object (names and endpoints the runbooks, health checks and playbooks use)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: `import infra`

import pulumi

from erpops import spec as erpops_spec
from erpops.errors import SpecError
from erpops.helm_values import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT, POSTGRES_PORT, REDIS_PORT, odoo_values, refs_for
from infra import derive
from infra.components import Environment, ObjectStorage, Odoo, Postgres, Redis

config = pulumi.Config("erpops")
stack = pulumi.get_stack()
try:
    sized = erpops_spec.validate(config.require_object("spec"), stack, f"Pulumi.{stack}.yaml")
    derive.check_program_constraints(sized)
except SpecError as exc:
    # Before any resource is registered: a bad spec changes nothing
    raise pulumi.RunError(str(exc)) from None
spec = sized.spec
admin_password = config.require_secret(spec.secrets.odoo_admin_password)
s3_keys = None
if spec.object_storage.mode == "s3-compatible":
    s3_keys = (config.require_secret(spec.secrets.s3_access_key_id or ""),
               config.require_secret(spec.secrets.s3_secret_access_key or ""))
redis_rotation = config.get("redisPasswordRotation") or "initial"

refs = refs_for(sized)
values = odoo_values(sized, refs,
                     pod_annotations={derive.ROTATION_ANNOTATION: redis_rotation} if spec.redis.enabled else None)

env = Environment("env", sized, refs, values)
base = [env.namespace, *env.service_accounts.values()]
storage = ObjectStorage("storage", sized, refs, env.provider, [env.namespace], s3_keys)
postgres = Postgres("postgres", sized, refs, env.provider, [env.namespace, storage.secret])
redis = Redis("redis", sized, refs, env.provider, base, redis_rotation) if spec.redis.enabled else None
# Odoo's module Job depends on all of these (the Cluster and Pooler first), and its chart on that Job
odoo = Odoo("odoo", refs, values, env.provider, admin_password,
            [*base, storage.secret, postgres.cluster, postgres.pooler,
             *([redis.secret, redis.service] if redis else [])])

ops = {
    "stack": stack,
    "tier": spec.tier,
    "kubernetes_context": spec.kubernetes.context,
    "namespace": env.namespace.metadata["name"],
    "database": {"name": sized.database, "owner": refs.pg_owner, "cluster": refs.pg_cluster},
    "services": {
        "odoo_web": {"name": refs.odoo_web_service, "port": ODOO_HTTP_PORT},
        "odoo_websocket": {"name": refs.odoo_web_service, "port": ODOO_WEBSOCKET_PORT},
        "pooler_rw": {"name": refs.pooler, "port": POSTGRES_PORT},
        "postgres_rw": {"name": refs.pg_rw_service, "port": POSTGRES_PORT},
        "redis": {"name": refs.redis_service, "port": REDIS_PORT} if redis else None,
    },
    "secrets": {
        "database": refs.pg_app_secret,
        "odoo_admin": refs.odoo_admin_secret,
        "object_storage": refs.s3_secret,
        "redis": refs.redis_secret if redis else None,
    },
    "buckets": {"filestore": storage.filestore_bucket, "backup": storage.backup_bucket},
    "endpoints": {
        "odoo": f"https://{spec.kubernetes.host}",
        "s3": storage.endpoint,
        "backup_destination": f"s3://{spec.object_storage.backup_bucket}/postgres/",
    },
    "redis_key_prefix": refs.redis_prefix if redis else None,
}
pulumi.export("ops", ops)
