"""OdooImage: images/odoo built FROM the spec's odoo.image and pushed (spec image.build), with pulumi-docker-build.

The tag (erpops.image.odoo_image) hashes the build context and the base, so the chart and the module Job
name the exact image this resource pushes; they depend on it and roll only once the push succeeded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from erpops import image as odoo_image
from erpops.spec import Sized


def context_path() -> str:
    """images/odoo relative to the working directory: no machine's absolute path in the state."""
    return os.path.relpath(odoo_image.IMAGE_DIR, Path.cwd())


class OdooImage(pulumi.ComponentResource):
    ref: str

    def __init__(self, name: str, sized: Sized, config: pulumi.Config,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:docker:OdooImage", name, None, opts)
        import pulumi_docker_build as docker_build  # only stacks that build need the provider

        build = sized.spec.image.build
        image = odoo_image.odoo_image(sized)
        self.ref = image.ref
        registries = []
        if build.registry_username_key and build.registry_password_key:
            registries.append({
                "address": build.repository.split("/", 1)[0],
                "username": config.require_secret(build.registry_username_key),
                "password": config.require_secret(build.registry_password_key),
            })
        context = context_path()
        self.image = docker_build.Image(
            f"{name}-build",
            context={"location": context},
            dockerfile={"location": os.path.join(context, "Dockerfile")},
            build_args=odoo_image.build_args(sized),
            # the requirements' hashes are of manylinux x86_64 wheels
            platforms=["linux/amd64"],
            tags=[image.ref],
            push=True,
            registries=registries,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"ref": image.ref, "digest": self.image.digest})
