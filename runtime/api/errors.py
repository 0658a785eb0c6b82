"""Lambda's API errors: the type, the HTTP status and the message member's spelling.

Lambda spells the message member ``message`` for some types and ``Message`` for others
(esm-spec §1.1); botocore reads either, and tools that read the raw JSON see what AWS sends.
The type goes in the ``x-amzn-ErrorType`` header, as AWS sends it.
"""

from __future__ import annotations

from typing import Any

NOT_FOUND = "The resource you requested does not exist."

_STATUS = {
    "InvalidParameterValueException": 400,
    "ValidationException": 400,
    "ResourceInUseException": 400,
    "ResourceConflictException": 409,
    "ResourceNotFoundException": 404,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "TooManyRequestsException": 429,
    "ServiceException": 500,
}
_CAPITAL_MESSAGE = {"ResourceInUseException", "ResourceNotFoundException", "ServiceException"}
# Errors of the caller's request ("User"), as opposed to the service's own.
_NO_TYPE = {"ValidationException", "InvalidSignatureException", "UnrecognizedClientException"}


class ApiError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type
        self.message = message

    @property
    def status(self) -> int:
        return _STATUS.get(self.type, 400)

    def body(self) -> dict[str, Any]:
        key = "Message" if self.type in _CAPITAL_MESSAGE else "message"
        out: dict[str, Any] = {key: self.message}
        if self.type not in _NO_TYPE:
            out["Type"] = "Service" if self.type == "ServiceException" else "User"
        return out


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValueException", message)


def not_found(message: str = NOT_FOUND) -> ApiError:
    return ApiError("ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    return ApiError("ResourceConflictException", message)


def in_use(message: str) -> ApiError:
    return ApiError("ResourceInUseException", message)
