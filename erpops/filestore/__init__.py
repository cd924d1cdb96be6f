"""Move an Odoo database's attachments between a filestore directory and object storage, verified and resumable."""
