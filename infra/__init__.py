"""The erpops Pulumi program: `__main__.py` plus one ComponentResource per concern in `components/`."""
