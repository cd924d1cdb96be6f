"""ObjectStorage: the filestore and backup buckets, and one Kubernetes Secret holding the credentials to them.

Mode `aws` creates both buckets (versioned, encrypted, private, lifecycle-managed; the prod backup bucket
with Object Lock) and an IAM user limited to them. Mode `s3-compatible` creates nothing outside the
cluster: the buckets exist already, and the two Pulumi secret config keys named in the spec hold the keys.
Either way the credentials end up only in a Kubernetes Secret.
"""

from __future__ import annotations

import json
import warnings

import pulumi
import pulumi_kubernetes as k8s

from erpops.helm_values import Refs
from erpops.spec import Sized
from infra import derive
from infra.components._k8s import child_opts, meta

# Noncurrent (overwritten or deleted) object versions kept for recovery from mistakes
FILESTORE_NONCURRENT_DAYS = 30
BACKUP_NONCURRENT_DAYS = 7


class ObjectStorage(pulumi.ComponentResource):
    secret: k8s.core.v1.Secret
    filestore_bucket: pulumi.Output[str]
    backup_bucket: pulumi.Output[str]
    endpoint: str

    def __init__(self, name: str, sized: Sized, refs: Refs, provider: k8s.Provider,
                 depends_on: list[pulumi.Resource],
                 s3_keys: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:ObjectStorage", name, None, opts)
        storage = sized.spec.object_storage
        if storage.mode == "aws":
            access_key_id, secret_access_key = self._aws(name, sized, refs)
            self.endpoint = f"https://s3.{storage.region}.amazonaws.com"
        else:
            if s3_keys is None:
                raise pulumi.RunError("object_storage.mode is s3-compatible but no S3 keys were read from config")
            access_key_id, secret_access_key = s3_keys
            self.endpoint = storage.endpoint or ""
            self.filestore_bucket = pulumi.Output.from_input(storage.filestore_bucket)
            self.backup_bucket = pulumi.Output.from_input(storage.backup_bucket)

        self.secret = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata=meta(refs.s3_secret, refs),
            type="Opaque",
            string_data={
                refs.s3_access_key_id_key: pulumi.Output.secret(access_key_id),
                refs.s3_secret_access_key_key: pulumi.Output.secret(secret_access_key),
                "region": storage.region,
            },
            opts=child_opts(self, provider, depends_on),
        )
        self.register_outputs({
            "secret": self.secret.metadata["name"],
            "filestoreBucket": self.filestore_bucket,
            "backupBucket": self.backup_bucket,
            "endpoint": self.endpoint,
        })

    def _aws(self, name: str, sized: Sized, refs: Refs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
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

        user = aws.iam.User(f"{name}-user", name=f"erpops-{sized.stack}-object-storage", tags=tags, opts=opts)
        policy = pulumi.Output.all(filestore.arn, backup.arn).apply(lambda arns: json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ListTheTwoBuckets", "Effect": "Allow",
                 "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                 "Resource": list(arns)},
                {"Sid": "ObjectsOfTheTwoBuckets", "Effect": "Allow",
                 "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts"],
                 "Resource": [f"{arn}/*" for arn in arns]},
            ],
        }, sort_keys=True))
        aws.iam.UserPolicy(f"{name}-user-policy", name=f"erpops-{sized.stack}-buckets", user=user.name,
                           policy=policy, opts=opts)
        key = aws.iam.AccessKey(f"{name}-access-key", user=user.name, opts=opts)
        return key.id, key.secret
