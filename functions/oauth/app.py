"""Tenant routes: Stripe connection, configuration, status and customer records. Wiring only.

Every caller mistake is a JSON ``{"error", "message"}`` with a 4xx; see revsync.services.tenants.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.infra.secrets import PlatformSecrets, TenantSecrets
from revsync.infra.stepfunctions import BackfillStarter
from revsync.services import tenants as service
from revsync.services.tenants import ApiError
from revsync.settings import get_settings
from revsync.store.customers import CustomerStore
from revsync.store.tenants import BackfillProgress, TenantStore
from revsync.stripe_api.client import StripeAccounts

logger = Logger()
tracer = Tracer()
app = APIGatewayHttpResolver()


@lru_cache(maxsize=1)
def dependencies() -> dict[str, Any]:
    tenant_secrets = TenantSecrets()
    return {
        "tenants": TenantStore(),
        "records": CustomerStore(),
        "claims": BackfillProgress(),
        "starter": BackfillStarter(),
        "secrets": tenant_secrets,
        "stripe": StripeAccounts(
            platform_key=PlatformSecrets().stripe_secret_key,
            tenant_api_key=lambda name: str(tenant_secrets.read(name)["api_key"]),
            api_base=get_settings().stripe_api_base,
        ),
    }


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def _json_body() -> Any:
    raw = app.current_event.decoded_body
    if not raw:
        raise ApiError(400, "invalid_body", "a JSON body is required")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid_json", "body is not valid JSON") from None


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response[str]:
    logger.info("request refused", error=exc.code, status=exc.status)
    return _json(exc.status, {"error": exc.code, "message": exc.message})


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    return _json(404, {"error": "not_found", "message": "no such route"})


@app.get("/health")
def health() -> Response[str]:
    return _json(200, {"status": "ok"})


@app.put("/tenants/<tenant_id>/stripe/connection")
def put_connection(tenant_id: str) -> Response[str]:
    deps = dependencies()
    document = service.connect_api_key(
        tenant_id,
        _json_body(),
        tenants=deps["tenants"],
        checker=deps["stripe"],
        secrets=deps["secrets"],
        now=int(time.time()),
    )
    return _json(200, document)


@app.put("/tenants/<tenant_id>/stripe/config")
def put_config(tenant_id: str) -> Response[str]:
    deps = dependencies()
    document = service.save_config(
        tenant_id,
        _json_body(),
        tenants=deps["tenants"],
        claims=deps["claims"],
        starter=deps["starter"],
        now=int(time.time()),
    )
    return _json(200, document)


@app.post("/tenants/<tenant_id>/stripe/backfill")
def post_backfill(tenant_id: str) -> Response[str]:
    deps = dependencies()
    started = service.start_backfill(
        tenant_id,
        tenants=deps["tenants"],
        claims=deps["claims"],
        starter=deps["starter"],
        now=int(time.time()),
    )
    return _json(202, started)


@app.get("/tenants/<tenant_id>/stripe")
def get_status(tenant_id: str) -> Response[str]:
    return _json(200, service.tenant_status(tenant_id, tenants=dependencies()["tenants"]))


@app.get("/tenants/<tenant_id>/customers/<external_id>")
def get_customer(tenant_id: str, external_id: str) -> Response[str]:
    record = service.customer_record(tenant_id, unquote(external_id), records=dependencies()["records"])
    return _json(200, record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
