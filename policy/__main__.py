"""The erpops CrossGuard pack.

pulumi preview --policy-pack policy/ [--policy-pack-config policy/config/<stack>.json]
"""

import sys
from pathlib import Path

from pulumi_policy import PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rules import INITIAL_CONFIG, POLICIES

PolicyPack(name="erpops", policies=POLICIES, initial_config=INITIAL_CONFIG)
