"""ObjectStorage: the filestore and backup buckets, and one Kubernetes Secret per identity that uses them.

Least privilege: CloudNativePG's key reaches the backup bucket only, Odoo's the filestore bucket only
(and Odoo has a key at all only when its attachments live in object storage). Mode `aws` creates both
buckets (versioned, encrypted, private, lifecycle-managed; the prod backup bucket with Object Lock) and
one IAM user per identity, each policy scoped to its bucket. Mode `s3-compatible` creates nothing outside
the cluster: the buckets exist already, and the Pulumi secret config keys named in the spec hold the keys.
Either way the credentials end up only in Kubernetes Secrets.
"""

from __future__ import annotations

import json
import warnings

import pulumi
import pulumi_kubernetes as k8s

from erpops.naming import Refs
from erpops.spec import Sized
from infra import derive
from infra.components._k8s import child_opts, meta

# Noncurrent (overwritten or deleted) object versions kept for recovery from mistakes
FILESTORE_NONCURRENT_DAYS = 30
BACKUP_NONCURRENT_DAYS = 7


Keys = tuple[pulumi.Output[str], pulumi.Output[str]]


def bucket_policy(bucket_arn: str) -> dict:
    """An IAM policy reaching one bucket and its objects, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListTheBucket", "Effect": "Allow",
             "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": [bucket_arn]},
            {"Sid": "ObjectsOfTheBucket", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": [f"{bucket_arn}/*"]},
        ],
    }


class ObjectStorage(pulumi.ComponentResource):
    secret: k8s.core.v1.Secret  # CloudNativePG's (backup bucket)
    odoo_secret: k8s.core.v1.Secret | None  # Odoo's (filestore bucket), object-storage mode only
    filestore_bucket: pulumi.Output[str]
    backup_bucket: pulumi.Output[str]
    endpoint: str

    def __init__(self, name: str, sized: Sized, refs: Refs, provider: k8s.Provider,
                 depends_on: list[pulumi.Resource],
                 s3_keys: dict[str, Keys] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:ObjectStorage", name, None, opts)
        storage = sized.spec.object_storage
        odoo_needs_s3 = sized.spec.filestore.mode == "object-storage"
        if storage.mode == "aws":
            keys = self._aws(name, sized, odoo_needs_s3)
            self.endpoint = f"https://s3.{storage.region}.amazonaws.com"
        else:
            if not s3_keys or "backup" not in s3_keys:
                raise pulumi.RunError("object_storage.mode is s3-compatible but no S3 keys were read from config")
            keys = s3_keys
            self.endpoint = storage.endpoint or ""
            self.filestore_bucket = pulumi.Output.from_input(storage.filestore_bucket)
            self.backup_bucket = pulumi.Output.from_input(storage.backup_bucket)

        def secret(resource_name: str, secret_name: str, pair: Keys) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                resource_name,
                metadata=meta(secret_name, refs),
                type="Opaque",
                string_data={
                    refs.s3_access_key_id_key: pulumi.Output.secret(pair[0]),
                    refs.s3_secret_access_key_key: pulumi.Output.secret(pair[1]),
                    "region": storage.region,
                },
                opts=child_opts(self, provider, depends_on),
            )

        self.secret = secret(f"{name}-credentials", refs.s3_secret, keys["backup"])
        self.drill_secret = (secret(f"{name}-drill-credentials", derive.DRILL_S3_SECRET, keys["drill"])
                             if sized.spec.drill.enabled and "drill" in keys else None)
        self.odoo_secret = (secret(f"{name}-odoo-credentials", refs.odoo_s3_secret, keys["odoo"])
                            if odoo_needs_s3 else None)
        self.register_outputs({
            "secret": self.secret.metadata["name"],
            "filestoreBucket": self.filestore_bucket,
            "backupBucket": self.backup_bucket,
            "endpoint": self.endpoint,
        })

    def _aws(self, name: str, sized: Sized, odoo_needs_s3: bool) -> dict[str, Keys]:
        with warnings.catch_warnings():
            # pulumi-aws 7 defines its deprecated *V2 aliases on import, each with a DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            import pulumi_aws as aws  # only stacks in aws mode need the AWS provider plugin

            _ = aws.s3.Bucket, aws.iam.User  # the submodules load lazily: load them inside the filter

        storage = sized.spec.object_storage
        retention = sized.spec.backup.retention
        prod = sized.spec.tier == "prod"
        tags = {"erpops:stack": sized.stack, "erpops:tier": sized.spec.tier}
        aws_provider = aws.Provider(f"{name}-aws", region=storage.region, opts=pulumi.ResourceOptions(parent=self))
        opts = pulumi.ResourceOptions(parent=self, provider=aws_provider)

        def bucket(kind: str, bucket_name: str, noncurrent_days: int, expiry_days: int | None,
                   object_lock_days: int | None) -> aws.s3.Bucket:
            b = aws.s3.Bucket(
                f"{name}-{kind}",
                bucket=bucket_name,
                # Object Lock can only be switched on when the bucket is created
                object_lock_enabled=object_lock_days is not None,
                force_destroy=False,
                tags={**tags, "erpops:purpose": kind},
                opts=pulumi.ResourceOptions(parent=self, provider=aws_provider, protect=prod),
            )
            on_bucket = pulumi.ResourceOptions(parent=self, provider=aws_provider, depends_on=[b])
            aws.s3.BucketPublicAccessBlock(
                f"{name}-{kind}-public-access", bucket=b.id, block_public_acls=True, block_public_policy=True,
                ignore_public_acls=True, restrict_public_buckets=True, opts=on_bucket)
            aws.s3.BucketOwnershipControls(
                f"{name}-{kind}-ownership", bucket=b.id, rule={"object_ownership": "BucketOwnerEnforced"},
                opts=on_bucket)
            versioning = aws.s3.BucketVersioning(
                f"{name}-{kind}-versioning", bucket=b.id, versioning_configuration={"status": "Enabled"},
                opts=on_bucket)
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-{kind}-encryption", bucket=b.id,
                rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
                opts=on_bucket)
            rules: list[dict] = [
                {"id": "abort-incomplete-multipart", "status": "Enabled", "filter": {"prefix": ""},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": 1}},
                {"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {"prefix": ""},
                 "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days}},
            ]
            if expiry_days is not None:
                rules.append({"id": "expire-after-retention", "status": "Enabled", "filter": {"prefix": ""},
                              "expiration": {"days": expiry_days}})
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-{kind}-lifecycle", bucket=b.id, rules=rules,
                opts=pulumi.ResourceOptions(parent=self, provider=aws_provider, depends_on=[b, versioning]))
            if object_lock_days is not None:
                aws.s3.BucketObjectLockConfiguration(
                    f"{name}-{kind}-object-lock", bucket=b.id, object_lock_enabled="Enabled",
                    # GOVERNANCE: nobody deletes a locked backup by accident; a deliberate admin can bypass
                    rule={"default_retention": {"mode": "GOVERNANCE", "days": object_lock_days}},
                    opts=pulumi.ResourceOptions(parent=self, provider=aws_provider, depends_on=[b, versioning]))
            return b

        lock_days = retention.daily if prod else None
        filestore = bucket("filestore", storage.filestore_bucket, FILESTORE_NONCURRENT_DAYS, None, None)
        backup = bucket("backup", storage.backup_bucket,
                        # a locked version cannot be expired before its lock ends
                        max(BACKUP_NONCURRENT_DAYS, (lock_days or 0) + 1),
                        derive.backup_expiry_days(retention), lock_days)
        self.filestore_bucket = filestore.bucket
        self.backup_bucket = backup.bucket

        def identity(kind: str, bucket_resource: aws.s3.Bucket, make_policy=bucket_policy) -> Keys:
            user = aws.iam.User(f"{name}-{kind}-user", name=f"erpops-{sized.stack}-{kind}", tags=tags, opts=opts)
            policy = bucket_resource.arn.apply(lambda arn: json.dumps(make_policy(arn), sort_keys=True))
            aws.iam.UserPolicy(f"{name}-{kind}-user-policy", name=f"erpops-{sized.stack}-{kind}-bucket",
                               user=user.name, policy=policy, opts=opts)
            key = aws.iam.AccessKey(f"{name}-{kind}-access-key", user=user.name, opts=opts)
            return key.id, key.secret

        keys = {"backup": identity("backup", backup)}
        if sized.spec.drill.enabled:  # the drill's own identity: read-only on the sets, writes only its reports
            keys["drill"] = identity("drill", backup, lambda arn: derive.drill_s3_policy(arn, sized.stack))
        if odoo_needs_s3:
            keys["odoo"] = identity("filestore", filestore)
        return keys
