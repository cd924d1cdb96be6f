"""erpops: one segregated Odoo environment per Pulumi stack. Reads the spec once, builds the components,
exports one `ops` object (names and endpoints the runbooks, health checks and playbooks use)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: `import infra`

import pulumi

from erpops import spec as erpops_spec
from erpops.errors import SpecError
from erpops.helm_values import odoo_values
from erpops.naming import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT, POSTGRES_PORT, REDIS_PORT, refs_for, stack_backup_target
from infra import derive
from infra.components import Drill, Environment, ObjectStorage, Odoo, OdooImage, Postgres, Redis

# the stack files beside Pulumi.yaml (not resolved: a project may link infra/ in), for the cross-stack rules
PROJECT_ROOT = Path(__file__).absolute().parents[1]
config = pulumi.Config("erpops")
stack = pulumi.get_stack()
try:
    raw_spec = config.require_object("spec")
    # the one validator every entry point runs, cross-stack rules included: `erpops spec validate` refuses
    # exactly what this refuses
    sized = erpops_spec.validate(raw_spec, stack, f"Pulumi.{stack}.yaml", root=PROJECT_ROOT)
except SpecError as exc:
    # Before any resource is registered: a bad spec changes nothing
    raise pulumi.RunError(str(exc)) from None
spec = sized.spec
admin_password = config.require_secret(spec.secrets.odoo_admin_password)
s3_keys = None
if spec.object_storage.mode == "s3-compatible":
    odoo_keys = (config.require_secret(spec.secrets.s3_access_key_id or ""),
                 config.require_secret(spec.secrets.s3_secret_access_key or ""))
    # CloudNativePG gets a key of its own when the spec names one (required with Odoo in object storage)
    backup_keys = odoo_keys
    if spec.secrets.backup_s3_access_key_id and spec.secrets.backup_s3_secret_access_key:
        backup_keys = (config.require_secret(spec.secrets.backup_s3_access_key_id),
                       config.require_secret(spec.secrets.backup_s3_secret_access_key))
    s3_keys = {"odoo": odoo_keys, "backup": backup_keys}
    if spec.drill.enabled:  # the drill's own key, read-only on the backup bucket (spec drill.s3_*_key)
        s3_keys["drill"] = (config.require_secret(spec.drill.s3_access_key_id_key or ""),
                            config.require_secret(spec.drill.s3_secret_access_key_key or ""))
smtp_password = (config.require_secret(spec.mail.outgoing.password_key)
                 if spec.mail.outgoing and spec.mail.outgoing.password_key else None)
redis_rotation = config.get("redisPasswordRotation") or "initial"
in_cluster_redis = spec.redis.enabled and spec.redis.mode == "in-cluster"
managed_redis_password = (config.require_secret(spec.secrets.redis_password or "")
                          if spec.redis.enabled and spec.redis.mode == "managed" else None)

refs = refs_for(sized)
values = odoo_values(sized, refs,
                     pod_annotations={derive.ROTATION_ANNOTATION: redis_rotation} if in_cluster_redis else None)

env = Environment("env", sized, refs)
base = [env.namespace, *env.service_accounts.values()]
storage = ObjectStorage("storage", sized, refs, env.provider, [env.namespace], s3_keys)
postgres = Postgres("postgres", sized, refs, env.provider, [env.namespace, storage.secret])
redis = Redis("redis", sized, refs, env.provider, base, redis_rotation) if in_cluster_redis else None
image = OdooImage("image", sized, config) if spec.image.build.enabled else None
# Odoo's module Job depends on all of these (the Cluster and Pooler first), and its chart on that Job
odoo = Odoo("odoo", refs, values, env.provider, admin_password,
            [*base, storage.secret, postgres.cluster, postgres.pooler,
             *([storage.odoo_secret] if storage.odoo_secret else []),
             *([env.filestore_claim] if env.filestore_claim else []),
             *([redis.secret, redis.service] if redis else []),
             *([image] if image else [])],
            smtp_password=smtp_password, redis_password=managed_redis_password)

drill = (Drill("drill", sized, refs, raw_spec, env.provider,
               [env.namespace, postgres.cluster, *([storage.drill_secret] if storage.drill_secret else [])])
         if spec.drill.enabled else None)

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
        "redis": ({"name": refs.redis_service, "port": REDIS_PORT} if redis else
                  {"name": values["redis"]["host"], "port": values["redis"]["port"]} if spec.redis.enabled else None),
    },
    "secrets": {
        "database": refs.pg_app_secret,
        "odoo_admin": refs.odoo_admin_secret,
        "object_storage": refs.s3_secret,
        "odoo_object_storage": refs.odoo_s3_secret if storage.odoo_secret else None,
        "redis": refs.redis_secret if spec.redis.enabled else None,
    },
    "buckets": {"filestore": storage.filestore_bucket, "backup": storage.backup_bucket},
    "endpoints": {
        "odoo": f"https://{spec.kubernetes.host}",
        "s3": storage.endpoint,
        "backup_destination": f"s3://{spec.object_storage.backup_bucket}/postgres/",
    },
    "redis_key_prefix": refs.redis_prefix if spec.redis.enabled else None,
    "image": values["image"]["repository"] + (f"@{values['image']['digest']}" if values["image"]["digest"]
                                              else f":{values['image']['tag']}"),
    "filestore": {"mode": spec.filestore.mode, "sessions": spec.filestore.session_store},
    "drill": ({"cronjob": derive.DRILL_NAME, "schedule": spec.drill.schedule, "db_role": derive.DRILL_DB_ROLE,
               "reports": f"{stack_backup_target(spec, stack).url}/drills/",
               "server": derive.drill_pg_host(sized, refs), "odoo_login": spec.drill.odoo_login} if drill else None),
}
pulumi.export("ops", ops)
