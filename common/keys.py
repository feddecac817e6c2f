"""Every Redis key and Pub/Sub channel name, built in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fields", "Keys", "response_channel"]


def response_channel(command_id: str) -> str:
    """The Pub/Sub channel carrying one command's events (part of the public protocol)."""
    return f"response:{command_id}"


class Fields:
    """Hash field names of a command that more than one module reads or writes."""

    STATUS = "status"
    #: The last event position written (``common/lua/event_append.lua`` increments it).
    EVENT_SEQ = "event_seq"
    #: Set to ``True`` when a running command is asked to stop.
    CANCEL_REQUESTED = "cancel_requested"
    #: Deliveries of the command's message so far (redeliveries included).
    ATTEMPTS = "attempts"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix, so tests and deployments can share a server safely."""

    prefix: str = "sovd"

    # Users and tokens
    def user(self, username: str) -> str:
        return f"{self.prefix}:user:{username}"

    def user_by_id(self, user_id: str) -> str:
        return f"{self.prefix}:user-id:{user_id}"

    def refresh_token(self, jti: str) -> str:
        return f"{self.prefix}:refresh:{jti}"

    def refresh_family(self, family: str) -> str:
        """One refresh-token chain: its tokens' ids and expiries (``common.refresh_chain``)."""
        return f"{self.prefix}:refresh-family:{family}"

    def revoked_access_token(self, jti: str) -> str:
        return f"{self.prefix}:revoked:{jti}"

    @property
    def auth_events(self) -> str:
        """Pub/Sub channel of revocations and deactivations (``common.auth_events``)."""
        return f"{self.prefix}:auth-events"

    # Vehicles
    def vehicle(self, vehicle_id: str) -> str:
        return f"{self.prefix}:vehicle:{vehicle_id}"

    @property
    def vehicles(self) -> str:
        return f"{self.prefix}:vehicles"

    @property
    def vehicle_vins(self) -> str:
        """VIN -> vehicle id of every registered vehicle (a hash; ``VehicleStore.by_vin``)."""
        return f"{self.prefix}:vehicle-vins"

    # Presence (common/presence.py)
    @property
    def presence_events(self) -> str:
        """Pub/Sub channel of connection status changes (JSON of ``PresenceChange``)."""
        return f"{self.prefix}:presence-events"

    @property
    def presence_seen(self) -> str:
        """Connected vehicles by their last report (a sorted set: id -> epoch ms), swept
        for silent vehicles."""
        return f"{self.prefix}:presence-seen"

    def vehicle_active(self, vehicle_id: str) -> str:
        """Commands admitted and not yet terminal on one vehicle (hash: id -> kind)."""
        return f"{self.prefix}:vehicle-active:{vehicle_id}"

    # Command deadlines (a sorted set: command id -> epoch seconds), swept by workers
    @property
    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    def idempotency(self, user_id: str, key_digest: str) -> str:
        return f"{self.prefix}:idempotency:{user_id}:{key_digest}"

    # Commands
    # A command's keys share a hash tag so its event script stays on one Redis Cluster slot.
    def command(self, command_id: str) -> str:
        return f"{self.prefix}:command:{{{command_id}}}"

    def command_responses(self, command_id: str) -> str:
        return f"{self.prefix}:command:{{{command_id}}}:responses"

    def command_events(self, command_id: str) -> str:
        """The durable per-command event log (a Stream whose entry ids are ``<seq>-0``)."""
        return f"{self.prefix}:command:{{{command_id}}}:events"

    @property
    def commands(self) -> str:
        return f"{self.prefix}:commands"

    def commands_by_user(self, user_id: str) -> str:
        return f"{self.prefix}:commands:user:{user_id}"

    def commands_by_vehicle(self, vehicle_id: str) -> str:
        return f"{self.prefix}:commands:vehicle:{vehicle_id}"

    def commands_by_status(self, status: str) -> str:
        """Commands in one status now; the event script moves a command between them."""
        return f"{self.commands_by_status_prefix}{status}"

    @property
    def commands_by_status_prefix(self) -> str:
        """What ``commands_by_status`` puts before the status (for the event script)."""
        return f"{self.prefix}:commands:status:"

    def scratch(self, token: str) -> str:
        """A key one script call writes and deletes before it returns."""
        return f"{self.prefix}:scratch:{token}"

    @property
    def history_index_version(self) -> str:
        """The layout version of the history indexes (``common/history.py``)."""
        return f"{self.prefix}:commands:index-version"

    def commands_by_type(self, command_name: str) -> str:
        return f"{self.prefix}:commands:type:{command_name}"

    @property
    def retention_lock(self) -> str:
        """Held by the api process running this round's retention sweep."""
        return f"{self.prefix}:retention-lock"

    def rate_limit(self, scope: str) -> str:
        """Prefix of one rate limit's counters (``<prefix>:<subject>:<window>``)."""
        return f"{self.prefix}:ratelimit:{scope}"

    @property
    def audit(self) -> str:
        """The audit trail (a Stream)."""
        return f"{self.prefix}:audit"

    @property
    def audit_index_prefix(self) -> str:
        """What ``audit_index`` puts before ``<field>:<value>`` (for the audit script)."""
        return f"{self.prefix}:audit:by:"

    def audit_index(self, field: str, value: str) -> str:
        """Audit entry ids with this field value (a sorted set scored by entry time, ms);
        ``audit_index("all", "")`` holds every entry."""
        return f"{self.audit_index_prefix}{field}:{value}"

    @property
    def audit_index_version(self) -> str:
        """The layout version of the audit indexes (``common/audit.py``)."""
        return f"{self.prefix}:audit:index-version"

    def stats(self, name: str) -> str:
        """Command statistics kept for metrics (hashes)."""
        return f"{self.prefix}:stats:{name}"

    # The simulated fleet's vehicle memory
    def sim_dtcs(self, vehicle_id: str, ecu_address: str) -> str:
        """Stored DTCs of one simulated ECU (a hash: code -> JSON)."""
        return f"{self.prefix}:sim:dtcs:{vehicle_id}:{ecu_address}"

    def sim_faults(self, vehicle_id: str) -> str:
        """Faults queued for the simulated vehicle's next exchanges (a list)."""
        return f"{self.prefix}:sim:faults:{vehicle_id}"

    @property
    def broker_namespace(self) -> str:
        """Namespace of Dramatiq's own keys."""
        return f"{self.prefix}:dramatiq"

    def broker_queue(self, queue_name: str) -> str:
        """Dramatiq's list of a queue's message ids (``dispatch.lua``: ``$namespace:$queue``)."""
        return f"{self.broker_namespace}:{queue_name}"

    def broker_queue_messages(self, queue_name: str) -> str:
        """Dramatiq's hash of a queue's messages by id (``$namespace:$queue.msgs``)."""
        return f"{self.broker_namespace}:{queue_name}.msgs"

    def broker_wake(self, queue_name: str) -> str:
        """A queue's wake-up list (``common/broker.py``), under the broker namespace."""
        return f"{self.broker_namespace}:{queue_name}.wake"
