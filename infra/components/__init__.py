"""One ComponentResource per concern; each names every child explicitly and parents it to itself."""

from infra.components.drill import Drill
from infra.components.environment import Environment
from infra.components.image import OdooImage
from infra.components.object_storage import ObjectStorage
from infra.components.odoo import Odoo
from infra.components.postgres import Postgres
from infra.components.redis import Redis

__all__ = ["Drill", "Environment", "ObjectStorage", "Odoo", "OdooImage", "Postgres", "Redis"]
