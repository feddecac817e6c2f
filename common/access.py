"""Who may do what: the authorization rules, as plain functions used by api and realtime."""

from __future__ import annotations

from common.commands import CommandRecord
from common.users import Role

__all__ = [
    "SUBMIT_ROLES",
    "can_cancel_command",
    "can_manage_fleet",
    "can_submit",
    "can_view_command",
    "sees_all_commands",
]

#: Roles that may submit commands.
SUBMIT_ROLES = frozenset({Role.ENGINEER, Role.ADMIN})


def can_submit(role: Role) -> bool:
    return role in SUBMIT_ROLES


def sees_all_commands(role: Role) -> bool:
    """Admins and viewers see every command; engineers see their own."""
    return role in (Role.ADMIN, Role.VIEWER)


def can_view_command(role: Role, user_id: str, command: CommandRecord) -> bool:
    return sees_all_commands(role) or command.user_id == user_id


def can_cancel_command(role: Role, user_id: str, command: CommandRecord) -> bool:
    """The owner (if still allowed to submit) or an admin."""
    return role == Role.ADMIN or (command.user_id == user_id and can_submit(role))


def can_manage_fleet(role: Role) -> bool:
    """Registering, changing and removing vehicles is for admins."""
    return role == Role.ADMIN
