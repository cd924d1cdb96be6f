"""Command-line options shared by several commands, declared once.

`--target`, `--endpoint-url` and `--region` name where backup sets live; backup, verify, restore, list,
prune, export, rehearse, drill, patch and filestore migrate take them. Each command says only what its
default is (the stack's backup target, the --from stack's, boto3's) and whether $ERPOPS_BACKUP_TARGET
applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

TARGET_ENV = "ERPOPS_BACKUP_TARGET"
ENDPOINT_ENV = "ERPOPS_S3_ENDPOINT_URL"

F = TypeVar("F", bound=Callable[..., Any])


def target_option(*, from_env: bool = True, default: str = "from --stack") -> Callable[[F], F]:
    env = f"${TARGET_ENV}, else " if from_env else ""
    return click.option("--target", envvar=TARGET_ENV if from_env else None, default=None,
                        help=f"Backup target: s3://bucket/prefix or file:///path (default: {env}{default}).")


def endpoint_url_option(*, default: str = "AWS, or the stack's") -> Callable[[F], F]:
    return click.option("--endpoint-url", envvar=ENDPOINT_ENV, default=None,
                        help=f"S3 endpoint (MinIO, Ceph, ...); default {default}.")


def region_option(*, default: str = "boto3's, or the stack's") -> Callable[[F], F]:
    return click.option("--region", default=None, help=f"S3 region (default: {default}).")


def backup_target_options(*, from_env: bool = True, target_default: str = "from --stack",
                          endpoint_default: str = "AWS, or the stack's",
                          region_default: str = "boto3's, or the stack's") -> Callable[[F], F]:
    """--target, --endpoint-url and --region, in that order."""
    def decorate(fn: F) -> F:
        for option in (region_option(default=region_default), endpoint_url_option(default=endpoint_default),
                       target_option(from_env=from_env, default=target_default)):
            fn = option(fn)
        return fn
    return decorate
