"""The mapping API over HTTP: Lambda's paths, status codes and JSON, on a port of its own.

Served by the supervisor (one per pod) only when API credentials are configured; every
request must carry a valid AWS Signature Version 4 by one of those keys
(:mod:`runtime.api.sigv4`), so boto3, the AWS CLI and Terraform work with an ordinary profile.
A refused request is answered 403 with Lambda's error shape and logged with the access key id
and the reason, never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from runtime.api.errors import ApiError
from runtime.api.service import MappingService
from runtime.api.sigv4 import SignatureError, check_headers, verify
from runtime.api.store import MappingStoreError

log = structlog.get_logger("runtime.api")

ESM_PATH = "/2015-03-31/event-source-mappings"
TAGS_PATH = "/2017-03-31/tags"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(exc: ApiError) -> web.Response:
    response = _json(exc.body(), exc.status)
    response.headers["x-amzn-ErrorType"] = exc.type
    return response


def _signature_error_type(reason: str) -> str:
    if reason.startswith("The security token"):
        return "UnrecognizedClientException"
    if reason.startswith("Missing Authentication Token"):
        return "MissingAuthenticationTokenException"
    if reason.startswith("Signature expired"):
        return "InvalidSignatureException"
    return "InvalidSignatureException"


def build_api(service: MappingService, credentials: Mapping[str, str]) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        try:
            # The key, date and scope first: a stranger's body is never read.
            check_headers(request.headers, credentials)
            body = await request.read()
            caller = verify(request.method, url, request.headers, body, credentials)
        except SignatureError as exc:
            reason = str(exc)
            log.warning(
                "mapping API request refused",
                reason=reason,
                method=request.method,
                path=request.path,
                remote=request.remote,
                access_key=_access_key(request.headers.get("Authorization", "")),
            )
            refused = _json({"message": reason}, 403)
            refused.headers["x-amzn-ErrorType"] = _signature_error_type(reason)
            return refused
        try:
            result = await handler(request)
        except ApiError as exc:
            log.info(
                "mapping API error",
                method=request.method,
                path=request.path,
                error=exc.type,
                message=exc.message,
            )
            return error_response(exc)
        except MappingStoreError as exc:
            log.error("mapping store unavailable", error=str(exc))
            return error_response(ApiError("ServiceException", f"mapping store: {exc}"))
        log.info(
            "mapping API call",
            method=request.method,
            path=request.path,
            status=result.status,
            access_key=caller.access_key,
        )
        return result

    async def body_of(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(
                "InvalidParameterValueException", "The request body is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise ApiError("InvalidParameterValueException", "The request body must be an object")
        return data

    async def create(request: web.Request) -> web.Response:
        return _json(await service.create(await body_of(request)), 202)

    async def list_(request: web.Request) -> web.Response:
        q = request.query
        max_items = q.get("MaxItems")
        try:
            limit = int(max_items) if max_items is not None else None
        except ValueError:
            raise ApiError("InvalidParameterValueException", "MaxItems: not a number") from None
        found = await service.list_mappings(
            q.get("EventSourceArn"), q.get("FunctionName"), q.get("Marker"), limit
        )
        return _json(found, 200)

    async def get(request: web.Request) -> web.Response:
        return _json(await service.get(request.match_info["uuid"]), 200)

    async def update(request: web.Request) -> web.Response:
        return _json(await service.update(request.match_info["uuid"], await body_of(request)), 202)

    async def delete(request: web.Request) -> web.Response:
        return _json(await service.delete(request.match_info["uuid"]), 202)

    async def list_tags(request: web.Request) -> web.Response:
        return _json({"Tags": await service.list_tags(request.match_info["arn"])}, 200)

    async def tag(request: web.Request) -> web.Response:
        tags = (await body_of(request)).get("Tags")
        if not isinstance(tags, dict) or not tags:
            raise ApiError("InvalidParameterValueException", "Tags: required, a map of strings")
        await service.tag(request.match_info["arn"], {str(k): str(v) for k, v in tags.items()})
        return web.Response(status=204)

    async def untag(request: web.Request) -> web.Response:
        keys = request.query.getall("tagKeys", [])
        await service.untag(request.match_info["arn"], list(keys))
        return web.Response(status=204)

    app = web.Application(middlewares=[authenticate], client_max_size=1024 * 1024)
    for path in (ESM_PATH, ESM_PATH + "/"):
        app.router.add_post(path, create)
        app.router.add_get(path, list_)
    item = ESM_PATH + "/{uuid}"
    app.router.add_get(item, get)
    app.router.add_put(item, update)
    app.router.add_delete(item, delete)
    tags = TAGS_PATH + "/{arn:.+}"
    app.router.add_get(tags, list_tags)
    app.router.add_post(tags, tag)
    app.router.add_delete(tags, untag)
    return app


def _access_key(authorization: str) -> str | None:
    _, _, rest = authorization.partition("Credential=")
    key = rest.split("/", 1)[0]
    return key or None
