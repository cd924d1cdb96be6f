"""Backups of Odoo databases: storage, engine, restore, Odoo zip interop and neutralization."""
