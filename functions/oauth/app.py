"""Tenant routes: Stripe connection, configuration, status and customer records. Wiring only.

Every caller mistake is a JSON ``{"error", "message"}`` with a 4xx; see revsync.services.tenants.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync import http_errors
from revsync.bootstrap import tenant_api as bootstrap
from revsync.domain import access
from revsync.errors import NotFound, RevsyncError
from revsync.services import connect, policy, reconcile, revenue, risks
from revsync.services import settings_page as settings_page_view
from revsync.services import tenants as service

logger = Logger()
tracer = Tracer()
app = APIGatewayHttpResolver()


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


def _now() -> int:
    return int(deps.clock())


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def _json_body() -> Any:
    return service.json_body(app.current_event.body, bool(app.current_event.is_base64_encoded))


def _authorize_tenant(resolver: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
    """Admin routes (those with a tenant in the path) act only for the caller's tenant (JWT mode)."""
    tenant_id = resolver.context.get("_route_args", {}).get("tenant_id")
    if tenant_id is not None:
        settings = deps.settings
        authorizer = resolver.current_event.request_context.authorizer.raw_event
        principal = access.principal_from_jwt(authorizer, settings.jwt_tenant_claim)
        access.authorize(settings.admin_auth, tenant_id, principal)
    return next_middleware(resolver)


app.use(middlewares=[_authorize_tenant])


def _error(error: RevsyncError) -> Response[str]:
    status = http_errors.status_of(error)
    assert status is not None  # only the categories are handled here (http_errors.ANSWERED)
    return _json(status, http_errors.body(error))


@app.exception_handler(list(http_errors.ANSWERED))
def _refused(exc: RevsyncError) -> Response[str]:
    logger.info("request refused", error=exc.code, status=http_errors.status_of(exc))
    return _error(exc)


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    return _error(NotFound("no such route"))


@app.get("/health")
def health() -> Response[str]:
    return _json(200, {"status": "ok"})


@app.put("/tenants/<tenant_id>/stripe/connection")
def put_connection(tenant_id: str) -> Response[str]:
    document = service.connect_api_key(
        tenant_id,
        _json_body(),
        tenants=deps.tenants,
        checker=deps.stripe,
        secrets=deps.secrets,
        now=_now(),
    )
    return _json(200, document)


@app.put("/tenants/<tenant_id>/stripe/config")
def put_config(tenant_id: str) -> Response[str]:
    document = service.save_config(
        tenant_id,
        _json_body(),
        tenants=deps.tenants,
        claims=deps.claims,
        starter=deps.starter,
        now=_now(),
    )
    return _json(200, document)


@app.get("/tenants/<tenant_id>/stripe/policy")
def get_policy(tenant_id: str) -> Response[str]:
    return _json(200, policy.policy_document(tenant_id, tenants=deps.tenants))


@app.put("/tenants/<tenant_id>/stripe/policy")
def put_policy(tenant_id: str) -> Response[str]:
    document = policy.save_policy(
        tenant_id, _json_body(), tenants=deps.tenants, queue=deps.catch_ups, now=_now()
    )
    return _json(200, document)


@app.post("/tenants/<tenant_id>/stripe/backfill")
def post_backfill(tenant_id: str) -> Response[str]:
    started = service.start_backfill(
        tenant_id,
        tenants=deps.tenants,
        claims=deps.claims,
        starter=deps.starter,
        now=_now(),
    )
    return _json(202, started)


def _connect_secrets() -> connect.ConnectSecrets:
    platform = deps.platform
    return connect.ConnectSecrets(
        client_id=platform.connect_client_id(), state_key=platform.state_signing_key()
    )


def _public_base_url() -> str:
    return connect.public_base_url(
        deps.settings.public_base_url, app.current_event.request_context.domain_name
    )


def _page(status: int, title: str, message: str) -> Response[str]:
    body = settings_page_view.message_page(title, message)
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=body)


@app.post("/tenants/<tenant_id>/stripe/connect")
def post_connect(tenant_id: str) -> Response[str]:
    document = connect.authorize_url(
        tenant_id,
        states=deps.states,
        stripe=deps.stripe,
        secrets=_connect_secrets(),
        redirect_uri=f"{_public_base_url()}/oauth/stripe/callback",
        now=_now(),
    )
    return _json(200, document)


@app.get("/oauth/stripe/callback")
def oauth_callback() -> Response[str]:
    query = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if isinstance(v, str)}
    try:
        tenant_id = connect.complete(
            query,
            tenants=deps.tenants,
            states=deps.states,
            stripe=deps.stripe,
            secrets=_connect_secrets(),
            now=_now(),
        )
    except http_errors.ANSWERED as exc:
        status = http_errors.status_of(exc)
        assert status is not None
        logger.info("oauth refused", error=exc.code, status=status)
        return _page(status, "Stripe was not connected", exc.message)
    settings = deps.settings
    location = connect.settings_location(
        _public_base_url(),
        tenant_id,
        return_url=settings.settings_return_url,
        app_shell=settings.admin_auth == access.JWT,
    )
    return Response(status_code=302, content_type="text/plain", body="", headers={"Location": location})


@app.delete("/tenants/<tenant_id>/stripe")
def delete_connection(tenant_id: str) -> Response[str]:
    document = connect.disconnect(
        tenant_id,
        tenants=deps.tenants,
        stripe=deps.stripe,
        secrets=_connect_secrets(),
        now=_now(),
    )
    return _json(200, document)


@app.get("/tenants/<tenant_id>/stripe/traits")
def get_traits(tenant_id: str) -> Response[str]:
    return _json(200, service.discover_traits(tenant_id, tenants=deps.tenants, stripe=deps.stripe))


@app.get("/tenants/<tenant_id>/stripe/settings")
def settings_page(tenant_id: str) -> Response[str]:
    body = service.settings_page(
        tenant_id,
        just_connected=bool(app.current_event.get_query_string_value("connected")),
        tenants=deps.tenants,
        events=deps.events,
        stripe=deps.stripe,
        revenue=revenue.revenue(tenant_id, {}, totals=deps.revenue, now=_now()),
        risks=risks.settings_list(tenant_id, reader=deps.risks, cursor_key=deps.platform.state_signing_key),
    )
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=body)


@app.get("/settings")
def settings_app() -> Response[str]:
    settings = deps.settings
    body = settings_page_view.app_shell(settings.admin_login_url, settings.jwt_tenant_claim)
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=body)


@app.get("/tenants/<tenant_id>/stripe")
def get_status(tenant_id: str) -> Response[str]:
    return _json(
        200,
        service.tenant_status(
            tenant_id,
            tenants=deps.tenants,
            events=deps.events,
            webhook_base_url=deps.settings.webhook_base_url,
        ),
    )


@app.post("/tenants/<tenant_id>/stripe/reconcile")
def post_reconcile(tenant_id: str) -> Response[str]:
    document = reconcile.request_catch_up(
        tenant_id, tenants=deps.tenants, progress=deps.events, queue=deps.catch_ups, now=_now()
    )
    return _json(202, document)


@app.get("/tenants/<tenant_id>/customers/<external_id>")
def get_customer(tenant_id: str, external_id: str) -> Response[str]:
    record = service.customer_record(tenant_id, unquote(external_id), records=deps.records)
    return _json(200, record)


@app.get("/tenants/<tenant_id>/customers/<external_id>/history")
def get_customer_history(tenant_id: str, external_id: str) -> Response[str]:
    document = revenue.customer_history(
        tenant_id, unquote(external_id), records=deps.records, histories=deps.histories
    )
    return _json(200, document)


@app.get("/tenants/<tenant_id>/revenue")
def get_revenue(tenant_id: str) -> Response[str]:
    query = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if isinstance(v, str)}
    return _json(200, revenue.revenue(tenant_id, query, totals=deps.revenue, now=_now()))


@app.get("/tenants/<tenant_id>/risks")
def get_risks(tenant_id: str) -> Response[str]:
    query = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if isinstance(v, str)}
    document = risks.at_risk(tenant_id, query, reader=deps.risks, cursor_key=deps.platform.state_signing_key)
    return _json(200, document)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
