"""Groups, calendars, control programs, assign commands and override commands: the
control and group management services, onto the agent's lighting programs and
overrides.

A calendar reaches lamps through their `calendarID` (PATCHed on the lamp actuator
function, or an assign command on devices or groups); every change rebuilds the
lighting document and pushes it to the controller (stored durably, applied
atomically, kept when refused). An override command is a local override: the
previous level comes back at its expiration and the program resumes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from cityedge.gateway.control.peer import Peer
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.talq import translate
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.errors import TalqError, bad_request, conflict, not_found, unprocessable
from cityedge.gateway.talq.http import Call, body_list, body_object, endpoint, require

DEFAULT_HOLD_S = 3600.0  # an override without expiration: an hour (or the program's next step)


def _collection(core: TalqCore, name: str) -> dict[str, dict[str, Any]]:
    collection: dict[str, dict[str, Any]] = getattr(core.store, name)
    return collection


def crud(
    core: TalqCore, path: str, store: str, key: str, param: str, what: str, *, lighting: bool
) -> list[web.RouteDef]:
    """GET/POST/PUT on `path`, GET/PUT/DELETE on `path/{param}` and `path/count`,
    for a collection of the store keyed by `key`."""

    async def changed(before: dict[str, dict[str, Any]]) -> None:
        core.store.save()
        if not lighting:
            return
        try:
            await core.apply_lighting()
        except TalqError:
            _collection(core, store).clear()
            _collection(core, store).update(before)  # refused whole: the old one stays
            core.store.save()
            raise

    def check(doc: dict[str, Any]) -> None:
        require(doc, what, key, "ownerCMS")
        if store == "programs":
            translate.program(doc)  # refuses what the controller could not run
        if store == "groups" and not isinstance(doc.get("members"), list):
            raise bad_request("payloadError", f"{what}: members missing")

    async def list_all(call: Call) -> tuple[int, Any]:
        return 200, list(_collection(core, store).values())

    async def count(call: Call) -> tuple[int, Any]:
        return 200, len(_collection(core, store))

    async def add(call: Call) -> tuple[int, Any]:
        docs = body_list(call, what)
        items = _collection(core, store)
        for doc in docs:
            check(doc)
            if doc[key] in items:
                raise conflict(f"{what} {doc[key]!r} exists")
        async with core.lock:
            before = dict(items)
            items.update({doc[key]: doc for doc in docs})
            await changed(before)
        return 201, docs

    async def update_many(call: Call) -> tuple[int, Any]:
        docs = body_list(call, what)
        items = _collection(core, store)
        for doc in docs:
            check(doc)
            if doc[key] not in items:
                raise not_found(f"{what} {doc[key]}")
        async with core.lock:
            before = dict(items)
            items.update({doc[key]: doc for doc in docs})
            await changed(before)
        return 200, docs

    async def get_one(call: Call) -> tuple[int, Any]:
        doc = _collection(core, store).get(call.match[param])
        if doc is None:
            raise not_found(f"{what} {call.match[param]}")
        return 200, doc

    async def update_one(call: Call) -> tuple[int, Any]:
        doc = body_object(call, what)
        check(doc)
        items = _collection(core, store)
        if call.match[param] not in items:
            raise not_found(f"{what} {call.match[param]}")
        if doc[key] != call.match[param]:
            raise unprocessable("payloadError", f"{what}: {key} differs from the path")
        async with core.lock:
            before = dict(items)
            items[doc[key]] = doc
            await changed(before)
        return 200, doc

    async def delete_one(call: Call) -> tuple[int, Any]:
        items = _collection(core, store)
        doc = items.get(call.match[param])
        if doc is None:
            raise not_found(f"{what} {call.match[param]}")
        _refuse_if_used(core, store, call.match[param])
        async with core.lock:
            before = dict(items)
            del items[call.match[param]]
            if store == "groups":  # its calendar goes with it
                core.store.group_calendars.pop(call.match[param], None)
            await changed(before)
        return 200, doc

    one = f"{path}/{{{param}}}"
    return [
        web.get(path, endpoint(list_all)),
        web.post(path, endpoint(add)),
        web.put(path, endpoint(update_many)),
        web.get(f"{path}/count", endpoint(count)),
        web.get(one, endpoint(get_one)),
        web.put(one, endpoint(update_one)),
        web.delete(one, endpoint(delete_one)),
    ]


def _refuse_if_used(core: TalqCore, store: str, key: str) -> None:
    in_use = {*core.store.assigned.values(), *core.store.group_calendars.values()}
    if store == "calendars" and key in in_use:
        raise unprocessable("deletingResourceIsReferred", f"calendar {key!r} is assigned to lamps")
    if store == "programs":
        for cal_id, cal in core.store.calendars.items():
            used = [cal.get("defaultProgram")] + [r.get("program") for r in cal.get("rules") or []]
            if key in used:
                raise unprocessable(
                    "deletingResourceIsReferred",
                    f"control program {key!r} is used by calendar {cal_id!r}",
                )


async def assign_calendar(
    core: TalqCore, devices: set[str], calendar: str, groups: frozenset[str] = frozenset()
) -> None:
    """Lamps, and the members of groups (as the groups change), follow `calendar`
    ('': none, back to the configured programs). Refused whole, or applied."""
    if calendar and calendar not in core.store.calendars:
        raise unprocessable("relatedResourceNotFound", f"no calendar {calendar!r}")
    async with core.lock:
        before = dict(core.store.assigned), dict(core.store.group_calendars)
        for target, keys in ((core.store.assigned, devices), (core.store.group_calendars, groups)):
            for key in keys:
                if calendar:
                    target[key] = calendar
                else:
                    target.pop(key, None)
        core.store.save()
        try:
            await core.apply_lighting()
        except TalqError:
            core.store.assigned, core.store.group_calendars = before
            core.store.save()
            raise


async def _members_changed(core: TalqCore, group: dict[str, Any], before: list[Any]) -> None:
    """A group's members changed: the calendar of the group follows its members."""
    async with core.lock:
        core.store.save()
        try:
            await core.apply_lighting()
        except TalqError:
            group["members"] = before
            core.store.save()
            raise


async def command_devices(core: TalqCore, devices: set[str], command: Any) -> None:
    """A TALQ command on lamps: a local override until its expiration."""
    if not devices:
        raise unprocessable("overrideAddressNotValid", "no lamp behind these addresses")
    level = translate.level_of(command)
    now = core.now()
    hold = DEFAULT_HOLD_S
    expiration = command.get("expiration") if isinstance(command, dict) else None
    if isinstance(expiration, str):
        try:
            until = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(
                "payloadError", f"expiration {expiration!r} is not a date-time"
            ) from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=dt.UTC)
        hold = (until - now).total_seconds()
        if hold < 1:
            raise unprocessable("overrideCommandNotValid", "the command has expired")
    controller = core.agent.lighting
    point = controller.lighting.dimming_point if controller is not None else "dimming"
    peer = Peer(None, None, None, claimed="talq-cms")
    for device in sorted(devices):
        info = core.agent.devices().get(device)
        if info is None or point not in info.points:
            raise unprocessable("overrideAddressNotValid", f"{device} has no lamp actuator")
        try:
            await core.agent.overrides.start(device, point, level, min(hold, 24 * 3600.0), peer)
        except ControlError as exc:
            raise unprocessable("overrideCommandNotValid", str(exc)) from None
        key = f"{core.store.address_of(device)}/lampActuator/targetLightCommand"
        core.store.attributes[key] = {**command, "reason": "override"}
    core.store.save()


def routes(core: TalqCore) -> list[web.RouteDef]:
    async def override(call: Call) -> tuple[int, Any]:
        body = body_object(call, "OverrideCommand")
        refs = body.get("addresses")
        if not isinstance(refs, list) or not isinstance(body.get("targetCommand"), dict):
            raise bad_request(
                "payloadError", "an override command needs addresses and a targetCommand"
            )
        await command_devices(core, core.members(refs), body["targetCommand"])
        return 201, None

    async def assign(call: Call) -> tuple[int, Any]:
        body = body_object(call, "AssignCommand")
        entity, refs = body.get("entity"), body.get("addresses")
        if not isinstance(refs, list):
            raise bad_request("payloadError", "an assign command needs addresses")
        if not isinstance(entity, dict) or entity.get("resource") != "calendars":
            raise unprocessable("assignmentEntityNotValid", "this gateway assigns calendars only")
        groups = frozenset(
            str(r.get("address")) for r in refs
            if isinstance(r, dict) and r.get("resource") == "groups"
            and str(r.get("address")) in core.store.groups
        )  # fmt: skip
        devices = core.members([r for r in refs if isinstance(r, dict)
                                and r.get("resource") == "devices"])  # fmt: skip
        if not devices and not groups:
            raise unprocessable("assignmentAddressNotValid", "no lamp or group behind these")
        await assign_calendar(core, devices, str(entity.get("address") or ""), groups)
        return 201, None

    async def add_members(call: Call) -> tuple[int, Any]:
        group = _group(core, call)
        refs = body_list(call, "ResourceReference")
        for ref in refs:
            require(ref, "ResourceReference", "resource", "address")
        before = list(group.get("members") or [])
        group["members"] = before + [r for r in refs if r not in before]
        await _members_changed(core, group, before)
        return 200, group["members"]

    async def count_members(call: Call) -> tuple[int, Any]:
        return 200, len(_group(core, call).get("members") or [])

    async def delete_member(call: Call) -> tuple[int, Any]:
        group = _group(core, call)
        ref = {"resource": call.match["memberResource"], "address": call.match["memberAddress"]}
        members = group.get("members") or []
        if ref not in members:
            raise not_found(f"member {ref['resource']}/{ref['address']}")
        group["members"] = [m for m in members if m != ref]
        await _members_changed(core, group, members)
        return 200, ref

    group_path = "/groups/{groupAddress}/members"
    return [
        *crud(core, "/groups", "groups", "address", "groupAddress", "Group", lighting=True),
        *crud(core, "/calendars", "calendars", "id", "calendarAddress", "Calendar", lighting=True),
        *crud(
            core,
            "/control-programs",
            "programs",
            "id",
            "controlProgramAddress",
            "ControlProgram",
            lighting=True,
        ),
        web.put(group_path, endpoint(add_members)),
        web.get(f"{group_path}/count", endpoint(count_members)),
        web.delete(f"{group_path}/{{memberResource}}/{{memberAddress}}", endpoint(delete_member)),
        web.post("/override-commands", endpoint(override)),
        web.post("/assign-commands", endpoint(assign)),
    ]


def _group(core: TalqCore, call: Call) -> dict[str, Any]:
    group = core.store.groups.get(call.match["groupAddress"])
    if group is None:
        raise not_found(f"group {call.match['groupAddress']}")
    return group
