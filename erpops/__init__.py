"""erpops: infrastructure-as-code and operations toolkit for running Odoo in production."""

__version__ = "0.1.0"
