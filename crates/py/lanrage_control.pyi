"""Client of the LANrage control plane for asyncio programs.

`RemoteControlPlaneClient` keeps the original LANrage client's methods and
argument order; peers and parties are dicts with the contract's keys.
`LocalControlPlaneClient` has the same methods without a server, and
`create_control_plane` picks the server when it answers, the local plane
otherwise.
"""

from os import PathLike
from typing import Any, Literal, Mapping, Protocol, Sequence, TypedDict, Union

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

class PartySettingsPatch(TypedDict, total=False):
    host_policy: Literal["end", "migrate"]
    join_policy: Literal["open", "invite"]
    max_members: int | None

class Invite(TypedDict):
    code: str
    nameplate: str
    party_id: str
    created_by: str
    created_at: str
    expires_at: str
    max_uses: int
    uses: int

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
        private_key: str | None = None,
        ca_cert: str | PathLike[str] | None = None,
        pin_sha256: str | None = None,
        events: bool = True,
    ) -> None:
        """`private_key` (base64, as `wg genkey` prints it) makes the client
        prove the key (`key-identity`) instead of registering by ID; the
        peer ID is then the key's unless `peer_id` names the server's.
        `ca_cert` is a PEM file of roots to trust for `https://` and
        `wss://`; `pin_sha256` the hex SHA-256 of the server's certificate."""
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
        self,
        party_id: str | None,
        name: str,
        host_peer_info: PeerInput,
        settings: PartySettingsPatch | None = None,
    ) -> Party:
        """Creates a party (the server assigns its ID; `party_id` is ignored).
        `settings` needs `host-migration` in `features()`."""
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
    async def features(self) -> list[str]:
        """What the server implements beyond v1 (`GET /`'s `features`)."""
    async def get_party_details(self, party_id: str) -> dict[str, Any]:
        """The full party read: `party`, `virtual_ips`, `seq`, and the
        extras of the server's features (`settings`, `host_epoch`,
        `succession`, `verified`)."""
    async def get_settings(self, party_id: str) -> dict[str, Any]:
        """`{"party_id", "settings", "seq"}` (`host-migration`)."""
    async def update_settings(
        self, party_id: str, settings: PartySettingsPatch
    ) -> dict[str, Any]:
        """Changes the given settings (host only); returns them all."""
    async def transfer_host(
        self, party_id: str, new_host_id: str, expected_epoch: int | None = None
    ) -> dict[str, Any]:
        """`{"party", "host_epoch", "seq"}`; 409 on a stale `expected_epoch`."""
    async def kick(self, party_id: str, peer_id: str, ban: bool = False) -> dict[str, Any]:
        """Removes a member (host only): `{"status", "banned", "seq"}`."""
    async def create_invite(
        self, party_id: str, max_uses: int | None = None, ttl_secs: int | None = None
    ) -> Invite:
        """A join code (host only, `invites`)."""
    async def list_invites(self, party_id: str) -> list[Invite]: ...
    async def revoke_invite(self, party_id: str, nameplate: str) -> None: ...
    async def preview_invite(self, code: str) -> dict[str, Any]:
        """`party_id`, `party_name`, `host_name`, `members`, `expires_at`,
        `uses_left`, without joining."""
    async def join_by_code(self, code: str, peer_info: PeerInput) -> Party:
        """Joins the party a code leads to, as `join_party` does."""
    async def report_relay_rtts(
        self, party_id: str, rtts: Mapping[str, float | None]
    ) -> dict[str, Any]:
        """This peer's round trips to relays in ms (None: unreachable),
        replacing its previous report (`relay-choice`); unknown relay IDs
        come back in `ignored`."""
    async def get_relay_recommendation(self, party_id: str) -> dict[str, Any]:
        """`relay` (or None), `worst_pair_rtt_ms`, `rtt_ms`, `unmeasured`,
        `alternates`, `reason`, `seq`."""
    async def report_nat(self, party_id: str, nat: Mapping[str, Any]) -> None:
        """`mapping`, `filtering` (`none`, `endpoint_independent`,
        `address_dependent`, `address_and_port_dependent`, `unknown`) and
        `port_mapping` (`path-plan`)."""
    async def report_paths(
        self, party_id: str, reports: Sequence[Mapping[str, Any]]
    ) -> None:
        """Outcomes: `{"peer_id", "outcome": "direct"|"relayed"|"failed",
        "rtt_ms"?}` each."""
    async def get_path_plan(self, party_id: str) -> dict[str, Any]:
        """`{"party_id", "pairs", "seq"}`: per pair, `lan`, `direct`,
        `attempt` or `relay`, with confidence and basis."""

class LocalControlPlaneClient:
    """The control plane without a server, with the remote client's
    methods. Parties live in memory, or are saved under `state_dir`, which
    local instances share to find each other's parties."""

    def __init__(
        self,
        peer_id: str,
        *,
        state_dir: str | PathLike[str] | None = None,
        peer_timeout: float = 300.0,
        heartbeat_interval: float = 30.0,
    ) -> None: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def fallback_reason(self) -> str | None:
        """Why `create_control_plane` ran locally; None when made directly."""
    async def initialize(self) -> None: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> "LocalControlPlaneClient": ...
    async def __aexit__(self, *args: object) -> None: ...
    async def register_party(
        self, party_id: str | None, name: str, host_peer_info: PeerInput
    ) -> Party: ...
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
    async def discover_parties(self) -> list[dict[str, Any]]:
        """Every party visible here (with `state_dir`, every instance's)."""
    async def flush(self) -> None:
        """Saves pending changes now."""

async def create_control_plane(
    server_url: str | None,
    peer_id: str,
    *,
    state_dir: str | PathLike[str] | None = None,
    first_contact_timeout: float = 3.0,
    **options: Any,
) -> RemoteControlPlaneClient | LocalControlPlaneClient:
    """The server when it answers within `first_contact_timeout` seconds
    (registered, socket open), else the local plane with `fallback_reason`.
    A refusal falling back would hide (bad key, untrusted certificate,
    invalid ID) raises. `options` go to `RemoteControlPlaneClient`."""
