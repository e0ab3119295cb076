"""TALQ error bodies: an array of `TALQErrorMessage` ({key, description}) with the
status the specification gives each kind of refusal."""

from __future__ import annotations

from typing import Any


class TalqError(Exception):
    """A request the gateway refuses: `status` and the TALQ error `key`."""

    def __init__(self, status: int, key: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.key = key
        self.description = description

    def body(self) -> list[dict[str, Any]]:
        return [{"key": self.key, "description": self.description}]


def bad_request(key: str, description: str) -> TalqError:
    return TalqError(400, key, description)


def not_found(what: str) -> TalqError:
    return TalqError(404, "resourceNotFound", f"{what} not found")


def unprocessable(key: str, description: str) -> TalqError:
    return TalqError(422, key, description)


def conflict(description: str) -> TalqError:
    return TalqError(409, "resourceConflict", description)
