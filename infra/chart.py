"""The helm/odoo chart rendered by the real Helm engine (helm-python-sdk): no Pulumi, no cluster.

One home for the chart's rendering, used by the Pulumi program (infra/components/odoo.py registers the
module Job objects this module renders), by `erpops render` (infra/render.py renders the whole chart with
the values the program passed) and by `erpops patch` (the kubernetes driver applies the stack's module
Job, made here exactly as the program makes it, stack labels included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from erpops.errors import EXIT_INTERNAL, ErpopsError
from erpops.helm_values import module_job_values, odoo_values
from erpops.naming import Refs, refs_for, stack_labels

CHART_DIR = Path(__file__).resolve().parents[1] / "helm" / "odoo"
MODULE_JOB_TEMPLATE = "templates/job-modules.yaml"
MODULE_JOB_KINDS = ("ConfigMap", "ServiceAccount", "Job")
# Pulumi waits this long past the Job's activeDeadlineSeconds (image pull, scheduling) before giving up
JOB_AWAIT_MARGIN_SECONDS = 600


class ChartError(ErpopsError):
    """The chart rendered something erpops does not expect (a bug in the chart or erpops, not in the spec)."""

    exit_code = EXIT_INTERNAL


def render_chart(chart_dir: Path, values: dict[str, Any], release: str, namespace: str,
                 template: str | None = None) -> list[dict[str, Any]]:
    """The chart's objects; with `template` (e.g. "templates/job-modules.yaml"), that template's only."""
    import helm_python as helm

    with helm.Chart.load(str(chart_dir)) as chart:
        chart.validate_schema(values)
        files = chart.render(values=values, name=release, namespace=namespace)
    objects = []
    for path in sorted(files):
        if not path.endswith((".yaml", ".yml")):
            continue
        if template is not None and not path.endswith("/" + template):
            continue
        for doc in yaml.safe_load_all(files[path]):
            if doc:
                objects.append(doc)
    return objects


def module_job_objects(values: dict[str, Any], release: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's templates/job-modules.yaml rendered with `moduleJob.hook=false`: ConfigMap and Job (and
    a ServiceAccount when the values ask the chart to create one), exactly as the chart makes them."""
    objects = render_chart(CHART_DIR, module_job_values(values), release, namespace, template=MODULE_JOB_TEMPLATE)
    unexpected = sorted({o.get("kind", "") for o in objects} - set(MODULE_JOB_KINDS))
    if unexpected or not [o for o in objects if o.get("kind") == "Job"]:
        raise ChartError(f"{MODULE_JOB_TEMPLATE} rendered kinds {unexpected or 'without a Job'}")
    return objects


def job_annotations(job: dict[str, Any]) -> dict[str, str]:
    """Pulumi-kubernetes annotations of the module Job.

    - No `pulumi.com/skipAwait`: the provider waits until the Job is Complete and fails the update when it
      fails, so nothing that depends on it (the chart) is touched after a failed migration.
    - `pulumi.com/timeoutSeconds`: the default Job await is 10 minutes, a module update may take up to
      activeDeadlineSeconds.
    - `pulumi.com/replaceUnready`: a Job that failed stays (no TTL) with its logs; the next `pulumi up`
      replaces it (runs it again) instead of waiting forever on the failed one.
    """
    deadline = int(job["spec"]["activeDeadlineSeconds"])
    return {
        "pulumi.com/timeoutSeconds": str(deadline + JOB_AWAIT_MARGIN_SECONDS),
        "pulumi.com/replaceUnready": "true",
    }


def module_job_manifests(values: dict[str, Any], refs: Refs) -> list[dict[str, Any]]:
    """The module Job objects as the program applies them: the chart's, plus the stack's labels (and the
    Job's await annotations)."""
    manifests = []
    for obj in module_job_objects(values, refs.odoo_release, refs.namespace):
        metadata = dict(obj["metadata"])
        metadata["labels"] = {**metadata.get("labels", {}), **stack_labels(refs)}
        if obj["kind"] == "Job":
            metadata["annotations"] = {**metadata.get("annotations", {}), **job_annotations(obj)}
        manifests.append({**obj, "metadata": metadata})
    return manifests


def stack_module_job(sized: Any) -> dict[str, Any]:
    """The module Job of a stack, the very object `pulumi up` applies (what `erpops patch` starts from)."""
    refs = refs_for(sized)
    jobs = [o for o in module_job_manifests(odoo_values(sized, refs), refs) if o["kind"] == "Job"]
    if len(jobs) != 1:
        raise ChartError(f"helm/odoo {MODULE_JOB_TEMPLATE} rendered {len(jobs)} Jobs, expected 1")
    return jobs[0]
