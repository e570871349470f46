"""One way to say what pydantic found wrong, in one line, for every entry point."""

from __future__ import annotations

from pydantic import ValidationError

_SECRETS = ("key", "token", "password", "secret")


def describe_validation_error(exc: ValidationError, *, show_input: bool = True) -> str:
    """The first problem pydantic found, as ``where: what (got value)``.

    Locations are dotted (``models.cloud.base_url``); a short scalar input is shown so the user
    sees the value that was refused.
    """
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if (
        show_input
        and isinstance(value, str | int | float | bool)
        and err["type"] != "extra_forbidden"
        and len(repr(value)) <= 80
        and not any(_SECRET in str(part).lower() for part in err["loc"] for _SECRET in _SECRETS)
    ):
        message += f" (got {value!r})"
    return f"{where}: {message}" if where else message
