"""Client of the LANrage control plane for asyncio programs.

`RemoteControlPlaneClient` keeps the original LANrage client's methods and
argument order; peers and parties are dicts with the contract's keys.
"""

from typing import Any, Literal, Mapping, Protocol, TypedDict, Union

__version__: str

NatType = Literal[
    "unknown", "open", "full_cone", "restricted_cone", "port_restricted_cone", "symmetric"
]

class Peer(TypedDict):
    peer_id: str
    name: str
    public_key: str
    nat_type: NatType
    public_ip: str
    public_port: int
    local_ip: str
    local_port: int
    last_seen: str

class Party(TypedDict):
    party_id: str
    name: str
    host_id: str
    created_at: str
    peers: dict[str, Peer]

class Relay(TypedDict):
    relay_id: str
    public_ip: str
    port: int
    region: str
    capacity: int
    registered_at: str

class Signal(TypedDict):
    party_id: str
    from_peer_id: str
    to_peer_id: str
    signal_data: dict[str, Any]
    sent_at: str

class _ToDict(Protocol):
    def to_dict(self) -> Mapping[str, Any]: ...

PeerInput = Union[Mapping[str, Any], _ToDict]
"""A peer as the original's `PeerInfo.to_dict()` gives it: `peer_id`,
`name`, `public_key`, `nat_type`, `public_ip`, `public_port`, `local_ip`,
`local_port` (`last_seen` and other keys are ignored)."""

class ControlPlaneError(Exception):
    """A call failed. The message is `HTTP {status}: {detail}` for a refusal."""

    status: int | None
    """The HTTP status of a refusal; None when no answer came."""
    detail: str
    """The server's `detail`, or what went wrong."""

EventType = Literal[
    "peer_joined",
    "peer_left",
    "party_update",
    "party_ended",
    "signal",
    "host_changed",
    "party_settings",
    "invite_revoked",
    "relay_recommendation",
    "path_plan",
    "party_lost",
    "lagged",
    "connected",
    "disconnected",
    "reconnecting",
    "gave_up",
    "unknown",
]

class Event:
    """One event of the socket; `to_dict()` has every field."""

    @property
    def type(self) -> EventType: ...
    @property
    def party_id(self) -> str | None: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def peer(self) -> Peer | None:
        """The peer of `peer_joined`."""
    @property
    def peer_id(self) -> str | None:
        """The peer of `peer_left`, `connected` and `signal` (its sender)."""
    @property
    def party(self) -> Party | None:
        """The party of `party_update`."""
    @property
    def signal(self) -> Signal | None:
        """The signal of `signal`."""
    @property
    def reason(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...

class EventStream:
    """`async for event in stream`; ends when the client is closed."""

    def __aiter__(self) -> "EventStream": ...
    async def __anext__(self) -> Event: ...

class RemoteControlPlaneClient:
    """The control server at `server_url`, acting as one peer.

    The peer is `peer_id=`, or the one `register_peer` registers, or the
    `peer_id` of the first peer info passed to `register_party` or
    `join_party`. Calls are retried (`retries` attempts in all, backoff
    from `retry_initial` to `retry_max` seconds) on transport errors, 5xx
    and 429, unless sending twice could apply twice. After a create or a
    join, a heartbeat runs every `heartbeat_interval` seconds.
    """

    def __init__(
        self,
        server_url: str,
        *,
        peer_id: str | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 15.0,
        retries: int = 4,
        retry_initial: float = 0.25,
        retry_max: float = 5.0,
        heartbeat_interval: float = 30.0,
        registration_key: str | None = None,
        events: bool = True,
    ) -> None: ...
    @property
    def server_url(self) -> str: ...
    @property
    def peer_id(self) -> str | None: ...
    async def initialize(self) -> None: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> "RemoteControlPlaneClient": ...
    async def __aexit__(self, *args: object) -> None: ...
    async def register_peer(self, peer_id: str) -> str:
        """Registers the peer; returns its bearer token."""
    async def register_party(
        self, party_id: str | None, name: str, host_peer_info: PeerInput
    ) -> Party:
        """Creates a party (the server assigns its ID; `party_id` is ignored)."""
    async def join_party(self, party_id: str, peer_info: PeerInput) -> Party: ...
    async def leave_party(
        self, party_id: str, peer_id: str
    ) -> Literal["left", "party_deleted"]: ...
    async def get_party(self, party_id: str) -> Party: ...
    async def get_peers(self, party_id: str) -> dict[str, Peer]: ...
    async def discover_peer(self, party_id: str, peer_id: str) -> Peer: ...
    async def heartbeat(self, party_id: str, peer_id: str) -> None: ...
    async def list_relays(self) -> list[Relay]: ...
    async def get_relays_by_region(self, region: str) -> list[Relay]: ...
    async def send_signal(
        self, party_id: str, to_peer_id: str, signal_data: Mapping[str, Any]
    ) -> None: ...
    async def poll_signals(self, party_id: str) -> list[Signal]: ...
    async def events(self) -> EventStream:
        """The socket's events (once per peer session)."""
