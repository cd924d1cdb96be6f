"""Options shared by the erpops.ops modules (extends_documentation_fragment: erpops.ops.erpops[.postgres])."""

from __future__ import annotations


class ModuleDocFragment:
    # Where the CLI is, which project and stack, which backup target, S3 credentials.
    DOCUMENTATION = r"""
options:
  erpops_bin:
    description:
      - Path of the C(erpops) command line.
      - Default, the C(erpops) beside the Python running the module (set C(ansible_python_interpreter) to the
        venv erpops is installed in), else C(erpops) on E(PATH).
    type: path
  project_root:
    description:
      - The erpops project root holding C(Pulumi.yaml) and the C(Pulumi.<stack>.yaml) files (C(erpops --root)).
      - Needed when O(stack) is set and the module does not run below the project root.
    type: path
  stack:
    description:
      - Stack name. Prefixes set ids, gives the tier (prod restores are not neutralized) and, without O(target),
        the target C(s3://<object_storage.backup_bucket>/<stack>).
    type: str
  target:
    description:
      - Backup target, C(s3://bucket/prefix) or C(file:///path). Default E(ERPOPS_BACKUP_TARGET), else from O(stack).
    type: str
  endpoint_url:
    description:
      - S3 endpoint (MinIO, Ceph, a test server). Default AWS, or the stack's.
    type: str
  region:
    description:
      - S3 region. Default boto3's, or the stack's.
    type: str
  aws_access_key_id:
    description:
      - S3 access key id, passed as E(AWS_ACCESS_KEY_ID) in the CLI's environment. Default boto3's chain.
    type: str
  aws_secret_access_key:
    description:
      - S3 secret key, passed as E(AWS_SECRET_ACCESS_KEY) in the CLI's environment, never on its command line.
    type: str
  aws_session_token:
    description:
      - S3 session token (E(AWS_SESSION_TOKEN)).
    type: str
notes:
  - Runs C(erpops <command> --json) on the host the task runs on; delegate to the controller where erpops is
    installed.
  - On failure the result carries the CLI's message in C(msg), its exit code in C(exit_code) (2 usage,
    3 service or credentials, 4 failed and rolled back, 5 integrity, 6 refused by pre-flight), C(error_type),
    the pre-flight C(problems) when there are some, and the last lines of its progress log in C(stderr_lines).
requirements:
  - erpops installed in the Python environment running the module (or O(erpops_bin)).
"""

    # The PostgreSQL server, as libpq sees it.
    POSTGRES = r"""
options:
  pg_host:
    description:
      - PostgreSQL host (E(PGHOST) of the CLI). Default the inherited E(PGHOST), else 127.0.0.1.
    type: str
  pg_port:
    description:
      - PostgreSQL port (E(PGPORT)).
    type: int
  pg_user:
    description:
      - PostgreSQL role (E(PGUSER)).
    type: str
  pg_password:
    description:
      - Password of O(pg_user), passed as E(PGPASSWORD) in the CLI's environment, never on its command line.
    type: str
"""
