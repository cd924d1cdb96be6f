"""The Odoo chart's values derived from the spec (the names they hold come from erpops.naming).

Pure: no Pulumi, no I/O. The Pulumi program (infra/) names its objects from `erpops.naming.refs_for()` and passes
`odoo_values(sized, refs)` to the chart; `erpops render` renders the chart with those same values.
Secrets are passed by reference only: a Secret name and a key, never a value.
"""

from __future__ import annotations

import copy
from typing import Any

from erpops import image as odoo_image
from erpops.naming import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT, POSTGRES_PORT, REDIS_PORT, Refs
from erpops.spec import Sized, image_addons
from erpops.units import format_mib_quantity

# the proxy waits this long past Odoo's own limit, so Odoo's error (not a 504) reaches the user
INGRESS_TIMEOUT_MARGIN_SECONDS = 60


def _resources(cpu: str, memory_mib: int) -> dict[str, Any]:
    # requests = limits: Guaranteed QoS, and the namespace quota sums to exactly what runs
    quantity = {"cpu": str(cpu), "memory": format_mib_quantity(memory_mib)}
    return {"requests": dict(quantity), "limits": dict(quantity)}


def odoo_resources(sized: Sized) -> dict[str, dict[str, Any]]:
    """Requests and limits of each kind of Odoo pod (web, cron, module_job), from the spec. The chart's
    values and the namespace quota (infra/derive.py) both read them here."""
    web, cron = sized.spec.odoo.web, sized.spec.odoo.cron
    return {
        "web": _resources(web.cpu, web.memory_mib),
        "cron": _resources(cron.cpu, cron.memory_mib),
        # `odoo -u` loads every module like a web worker does: give it a web pod's size
        "module_job": _resources(web.cpu, web.memory_mib),
    }


def odoo_values(sized: Sized, refs: Refs, *, pod_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The helm/odoo values of one stack: spec + sizing + the names of the objects the other components make.

    `pod_annotations` roll the Odoo pods when something they read only at start changes (e.g. the Redis
    password rotation marker), without putting the changed value itself in the values.
    """
    spec = sized.spec
    odoo, web, cron = spec.odoo, spec.odoo.web, spec.odoo.cron
    storage = spec.object_storage
    running = odoo_image.odoo_image(sized)
    image = {"repository": running.repository, "tag": running.tag, "digest": running.digest,
             "addons": list(image_addons(spec))}
    fs = spec.filestore
    store = fs.session_store
    annotations = dict(pod_annotations or {})
    autoscale = web.autoscale
    resources = odoo_resources(sized)
    values: dict[str, Any] = {
        "fullnameOverride": refs.odoo_release,
        "commonLabels": {"erpops.io/stack": sized.stack},
        "image": {**image, "pullPolicy": "IfNotPresent"},
        "odoo": {
            "version": odoo.version,
            "addonsPath": ["/mnt/extra-addons", *([odoo_image.ADDONS_PATH] if running.built else [])],
            "proxyMode": odoo.proxy_mode,
            "dbfilter": odoo.dbfilter,
            "limits": {
                "memorySoft": sized.odoo.limit_memory_soft,
                "memoryHard": sized.odoo.limit_memory_hard,
                "timeCpu": sized.odoo.limit_time_cpu,
                "timeReal": sized.odoo.limit_time_real,
                "request": sized.odoo.limit_request,
            },
            "adminPassword": {"existingSecret": refs.odoo_admin_secret, "key": refs.odoo_admin_key},
        },
        "database": {
            # through the PgBouncer pooler (session mode); its Service has the Pooler's name
            "host": refs.pooler,
            "port": POSTGRES_PORT,
            "name": sized.database,
            "sslmode": "require",
            "maxConnections": sized.odoo.db_maxconn,
            "existingSecret": refs.pg_app_secret,
            "userKey": "username",
            "passwordKey": "password",
        },
        "web": {
            "replicaCount": web.replicas,
            "workers": sized.odoo.workers,
            "resources": resources["web"],
            "autoscaling": {
                "enabled": autoscale.enabled,
                "minReplicas": autoscale.min_replicas,
                "maxReplicas": autoscale.max_replicas,
                "targetCPUUtilizationPercentage": autoscale.target_cpu_percent,
            },
            "podAnnotations": annotations,
            "serviceAccount": {"create": False, "name": refs.odoo_web_sa},
        },
        "cron": {
            # cron in its own Deployment when it has a replica; the filestore is S3, shared by every pod
            "enabled": cron.replicas > 0,
            "replicaCount": max(cron.replicas, 1),
            "maxCronThreads": sized.odoo.cron_threads,
            "resources": resources["cron"],
            "podAnnotations": annotations,
            "serviceAccount": {"create": False, "name": refs.odoo_cron_sa},
        },
        "moduleJob": {
            "enabled": True,
            "modules": list(odoo.modules),
            "resources": resources["module_job"],
            "serviceAccount": {"create": False, "name": refs.odoo_modules_sa},
        },
        "service": {"httpPort": ODOO_HTTP_PORT, "websocketPort": ODOO_WEBSOCKET_PORT},
        "ingress": {
            "enabled": True,
            "className": spec.kubernetes.ingress_class,
            "host": spec.kubernetes.host,
            "tlsSecretName": spec.kubernetes.tls_secret or "",
            "annotations": ingress_annotations(sized, sized.odoo.limit_time_real),
            "websocketAnnotations": ingress_annotations(sized, spec.ingress.websocket_timeout_seconds),
        },
        "redis": _redis_values(sized, refs, store == "redis"),
        "sessionDb": {"enabled": store == "database"},
        "s3": {
            "enabled": fs.mode == "object-storage",
            "endpoint": (storage.endpoint or "") if storage.mode == "s3-compatible" else "",
            "region": storage.region,
            "bucket": storage.filestore_bucket,
            "existingSecret": refs.odoo_s3_secret if fs.mode == "object-storage" else "",
            "accessKeyIdKey": refs.s3_access_key_id_key,
            "secretAccessKeyKey": refs.s3_secret_access_key_key,
        },
        "persistence": _persistence(sized, refs),
        "mail": _mail_values(sized, refs),
    }
    if not values["cron"]["enabled"]:
        values["cron"].pop("podAnnotations")
    return values


def ingress_annotations(sized: Sized, timeout_seconds: int) -> dict[str, str]:
    """ingress-nginx annotations: uploads up to the spec's body size, and proxy timeouts that outlast Odoo's.

    ingress-nginx defaults are 1m bodies (413 above) and 60 s read/send timeouts (504 above); Odoo lets a
    request run for limit_time_real, so the proxy waits that long plus a margin for the response to arrive.
    """
    timeout = str(timeout_seconds + INGRESS_TIMEOUT_MARGIN_SECONDS)
    return {
        "nginx.ingress.kubernetes.io/proxy-body-size": f"{sized.spec.ingress.body_size_mib}m",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": timeout,
        "nginx.ingress.kubernetes.io/proxy-send-timeout": timeout,
    }



def _persistence(sized: Sized, refs: Refs) -> dict[str, Any]:
    fs = sized.spec.filestore
    if fs.mode == "shared-volume" and fs.volume is not None:
        # the program creates the claim (the module Job mounts it before the chart exists)
        return {"enabled": True, "existingClaim": refs.filestore_claim, "accessModes": ["ReadWriteMany"],
                "storageClass": fs.volume.storage_class, "size": fs.volume.size}
    # object storage keeps attachments in S3 and sessions in PostgreSQL/Redis: /var/lib/odoo is scratch
    return {"enabled": False}


def _redis_values(sized: Sized, refs: Refs, enabled: bool) -> dict[str, Any]:
    redis = sized.spec.redis
    host, port = refs.redis_service, REDIS_PORT
    if redis.mode == "managed" and redis.endpoint:
        host, _, port_text = redis.endpoint.rpartition(":")
        port = int(port_text)
    return {
        "enabled": enabled,
        "host": host if enabled else "",
        "port": port,
        "prefix": refs.redis_prefix,
        "expiration": redis.session_ttl_seconds,
        "existingSecret": refs.redis_secret if enabled else "",
        "passwordKey": refs.redis_password_key,
    }


def _mail_values(sized: Sized, refs: Refs) -> dict[str, Any]:
    out = sized.spec.mail.outgoing
    if out is None:
        return {"smtp": {"enabled": False}}
    return {"smtp": {
        "enabled": True,
        "server": out.host,
        "port": out.port,
        "ssl": out.tls == "starttls",
        "user": out.user or "",
        "existingSecret": refs.smtp_secret if out.password_key else "",
        "passwordKey": refs.smtp_password_key,
    }}


def chart_values(values: dict[str, Any]) -> dict[str, Any]:
    """The values the Pulumi program installs the chart with: everything but the module Job.

    Pulumi's helm.v4.Chart ignores Helm hooks (it applies what `helm template` prints), so the hook Job
    would start together with the Deployments. The program applies the Job itself (`module_job_values`),
    waits for it, and only then installs the chart.
    """
    out = copy.deepcopy(values)
    out["moduleJob"]["enabled"] = False
    return out


def module_job_values(values: dict[str, Any]) -> dict[str, Any]:
    """The values the module Job is rendered from (templates/job-modules.yaml alone): the same values as
    the chart's, with `moduleJob.hook=false`, so the Job is a plain object named after a hash of (image,
    database, modules) that runs `odoo -i MODULES -u MODULES --stop-after-init`."""
    out = copy.deepcopy(values)
    out["moduleJob"]["enabled"] = True
    out["moduleJob"]["hook"] = False
    return out
