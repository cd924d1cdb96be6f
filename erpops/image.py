"""The Odoo image that runs: odoo.image itself, or images/odoo built FROM it (spec image.build).

Pure: reads only the files of images/odoo. The tag of a built image hashes the build context and
the base image, so a changed pin or base is a new tag (and a new module Job), never a moved one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from erpops.spec import Sized

IMAGE_DIR = Path(__file__).resolve().parents[1] / "images" / "odoo"
# where the Dockerfile's `pip install --target` puts the addons (odoo-addon-* wheels: odoo/addons/<name>)
ADDONS_PATH = "/opt/erpops/site/odoo/addons"


@dataclass(frozen=True)
class OdooImage:
    repository: str
    tag: str
    digest: str
    built: bool

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


def context_files(series: str) -> list[Path]:
    return [IMAGE_DIR / "Dockerfile", IMAGE_DIR / f"requirements-{series}.txt"]


def context_hash(series: str, base: str) -> str:
    h = hashlib.sha256(base.encode())
    for path in context_files(series):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def build_args(sized: Sized) -> dict[str, str]:
    return {"ODOO_IMAGE": sized.spec.odoo.image, "ODOO_SERIES": sized.spec.odoo.version}


def odoo_image(sized: Sized) -> OdooImage:
    odoo, build = sized.spec.odoo, sized.spec.image.build
    if build.enabled:
        base_tag = odoo.image.split("@")[0].rsplit(":", 1)[-1] if ":" in odoo.image.split("@")[0] else odoo.version
        tag = f"{base_tag}-erpops-{context_hash(odoo.version, odoo.image)}"
        return OdooImage(build.repository, tag, "", True)
    if "@" in odoo.image:
        repository, digest = odoo.image.split("@", 1)
        return OdooImage(repository, "", digest, False)
    repository, _, tag = odoo.image.rpartition(":")
    return OdooImage(repository, tag, "", False)


def pinned_addons(series: str) -> list[str]:
    """The addon names requirements-<series>.txt installs (odoo-addon-fs-attachment -> fs_attachment)."""
    text = (IMAGE_DIR / f"requirements-{series}.txt").read_text()
    return [m.group(1).replace("-", "_") for m in re.finditer(r"^odoo-addon-([a-z0-9-]+)==", text, re.M)]
