"""The composition root: each function's adapters, built in one place from its settings.

One module per function (``receiver``, ``worker``, ``tenant_api``, ``importer``, ``reconciler``,
``rollup``), each with the function's graph (a NamedTuple: its settings and the adapters its
handler hands the services) and two ways to build it:

- ``build(settings, **overrides)``: from settings already read (``revsync.settings``);
- ``from_environ(environ, **overrides)``: the settings read and checked from ``environ`` first. A
  handler calls it at import (``deps = bootstrap.from_environ(os.environ)``), so a missing or
  malformed variable fails the function's cold start.

Building makes no network call: clients are made on first use. It configures the process's AWS
clients (``revsync.infra.aws.configure``) and binds the PynamoDB models to the function's tables
(``revsync.store.models.bind``), the two process-wide bindings. ``overrides`` replace parts of the
graph by name (tests pass fakes and clocks; ``local.lambda_runtime.wire`` installs the result).

A module per function rather than one module: the receiver's cold start is budgeted, and each
graph's class costs its import. For the same reason these modules use real annotations (the types
are imported anyway), not ``from __future__ import annotations``.
"""
