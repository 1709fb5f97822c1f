"""HTTP errors in OpenAI's shape (`{"error": {message, type, code}}`) and the mapping from our exceptions."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slm.errors import AccessDenied, KnowledgeBaseError, ModelLoadError, RegistryError, RequestTooLarge, SlmError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error the API answers with a status, a message the caller can act on, and optional headers."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "error"), "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


async def send_error(send, status: int, message: str, *, code: str | None = None,
                     headers: dict[str, str] | None = None, scope: dict | None = None) -> None:
    """An error response written straight to ASGI `send` (for middleware, before any route runs), in the
    language of the request `scope` when given; it closes the connection, since the rest of the request is not read."""
    import json

    if scope is not None:
        from starlette.datastructures import Headers

        message = localised(Headers(scope=scope).get("accept-language"), message, code)
    body = json.dumps(error_body(status, message, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def from_slm_error(exc: SlmError) -> ApiError:
    if isinstance(exc, AccessDenied):
        return ApiError(403, str(exc), code="access_denied")
    if isinstance(exc, RequestTooLarge):
        # 422 like the other "over a limit" refusals; 413 stays "the body is too many bytes".
        return ApiError(422, str(exc), code=exc.code)
    if isinstance(exc, RegistryError):
        return ApiError(404, str(exc), code="model_not_found")
    if isinstance(exc, (KnowledgeBaseError, ModelLoadError)):
        return ApiError(503, str(exc), code="not_ready", headers={"Retry-After": "10"})
    return ApiError(500, str(exc), code="internal_error")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    first_param = None
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        first_param = first_param or where
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", first_param


def localised(accept_language: str | None, message: str, code: str | None) -> str:
    """The message in the caller's language (Accept-Language: zh-CN or id; slm.text.messages)."""
    from slm.text.messages import localised_error, preferred_language

    return localised_error(message, code, preferred_language(accept_language))


def _localised(request: Request, message: str, code: str | None) -> str:
    return localised(request.headers.get("accept-language"), message, code)


def install_error_handlers(app) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, _localised(request, exc.message, exc.code), code=exc.code, param=exc.param,
                              headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(422, _localised(request, message, "invalid_request"), code="invalid_request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code)  # an unknown route or method: localised like our own errors
        return error_response(exc.status_code, _localised(request, str(exc.detail), code), code=code,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(SlmError)
    async def _slm(request: Request, exc: SlmError):
        err = from_slm_error(exc)
        return error_response(err.status, _localised(request, err.message, err.code), code=err.code, headers=err.headers)
