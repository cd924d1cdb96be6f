"""Load tests for Odoo: Locust users and personas, baselines, and the regression gate.

Only `loadtests.odoo_user`, `loadtests.personas`, `loadtests.bench_users` and `loadtests.runner`
import Locust (which monkey-patches the standard library with gevent on import). They run in their
own process (`python -m loadtests.runner`); everything else here, the CLI included, never imports them.
"""
