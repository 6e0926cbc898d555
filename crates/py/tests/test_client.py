"""lanrage_control against the real server: every method of the original
client, errors, events (across a server restart), signals, the newer
capabilities, the local fallback, and a PartyManager-style flow.

Each test starts `lanrage-control serve` (the debug build under
$CARGO_TARGET_DIR, or $LANRAGE_CONTROL_BIN) on a free port over a fresh
SQLite file. Run with `bash .ci/python`.
"""

import asyncio
import base64
import json
import os
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pytest

import lanrage_control
from lanrage_control import (
    ControlPlaneError,
    LocalControlPlaneClient,
    RemoteControlPlaneClient,
    create_control_plane,
)

RELAY_KEY = "python-tests-relay-key"
PEER_KEYS = {"peer_id", "name", "public_key", "nat_type", "public_ip", "public_port",
             "local_ip", "local_port", "last_seen"}
PARTY_KEYS = {"party_id", "name", "host_id", "created_at", "peers"}


def server_binary() -> Path:
    if "LANRAGE_CONTROL_BIN" in os.environ:
        return Path(os.environ["LANRAGE_CONTROL_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanrage-target"))
    return Path(target) / "debug" / "lanrage-control"


class Server:
    """`lanrage-control serve` over a SQLite file in `tmp_path`; stopped
    and started again on the same address and file by `restart`."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.log_path = tmp_path / "server.log"
        self.process = None
        self.address = "127.0.0.1:0"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self):
        env = dict(os.environ,
                   LANRAGE_LOG_FORMAT="json",
                   LANRAGE_LISTEN=self.address,
                   LANRAGE_DATABASE_URL=f"sqlite://{self.tmp_path}/control.db",
                   LANRAGE_RATE_LIMIT="off",
                   LANRAGE_RELAY_KEY=RELAY_KEY)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([str(server_binary()), "serve"], env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        # The bound address comes from the server's log.
        deadline = time.monotonic() + 20
        while True:
            log = self.log_path.read_text()
            assert self.process.poll() is None, f"the server exited: {log}"
            assert time.monotonic() < deadline, f"no listening line: {log}"
            for line in log.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message", "").endswith("listening"):
                    self.address = entry["address"]
                    return
            time.sleep(0.05)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self):
        self.stop()
        self.start()


@pytest.fixture
def live_server(tmp_path):
    """A running server, to stop and restart."""
    server = Server(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(live_server):
    """The running server's base URL."""
    return live_server.url


def register_relay(server: str, relay_id: str, region: str):
    body = json.dumps({"relay_id": relay_id, "public_ip": "198.51.100.1",
                       "port": 51820, "region": region}).encode()
    request = urllib.request.Request(
        f"{server}/relays", data=body, method="POST",
        headers={"Authorization": f"Bearer {RELAY_KEY}",
                 "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=60))


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def peer(peer_id: str, n: int, **changes) -> dict:
    """A peer as the original PeerInfo.to_dict() gives it (naive last_seen)."""
    info = dict(peer_id=peer_id, name=peer_id.title(), public_key=key(n),
                nat_type="full_cone", public_ip="203.0.113.7", public_port=51820,
                local_ip="192.168.1.20", local_port=51820,
                last_seen=datetime.now().isoformat())
    info.update(changes)
    return info


def client(server: str, **options) -> RemoteControlPlaneClient:
    return RemoteControlPlaneClient(server, request_timeout=5.0, **options)


async def next_event(events, wanted, timeout=10.0):
    """The first event `wanted` accepts, within `timeout` seconds."""
    async def find():
        async for event in events:
            if wanted(event):
                return event
        raise AssertionError("the events ended")
    return await asyncio.wait_for(find(), timeout)


def test_module_exports():
    assert lanrage_control.__version__
    assert issubclass(ControlPlaneError, Exception)


def test_register_peer_returns_a_token(server):
    async def main():
        alice = client(server)
        await alice.initialize()
        assert alice.peer_id is None
        token = await alice.register_peer("alice")
        assert isinstance(token, str) and token
        assert alice.peer_id == "alice"
        # Registering again gives a fresh token for the same peer.
        assert await alice.register_peer("alice") != token
        await alice.close()
    run(main())


def test_every_party_method(server):
    async def main():
        alice = client(server, peer_id="alice")
        bob = client(server)
        await alice.initialize()
        await bob.initialize()
        await bob.register_peer("bob")

        party = await alice.register_party("ignored", "Friday LAN", peer("alice", 1))
        assert set(party) == PARTY_KEYS
        assert party["name"] == "Friday LAN" and party["host_id"] == "alice"
        assert set(party["peers"]["alice"]) == PEER_KEYS
        datetime.fromisoformat(party["created_at"])
        party_id = party["party_id"]
        assert party_id != "ignored"

        joined = await bob.join_party(party_id, peer("bob", 2, nat_type="symmetric"))
        assert set(joined["peers"]) == {"alice", "bob"}

        read = await bob.get_party(party_id)
        assert set(read) == PARTY_KEYS and read["party_id"] == party_id

        peers = await alice.get_peers(party_id)
        assert set(peers) == {"alice", "bob"}
        assert all(set(p) == PEER_KEYS for p in peers.values())

        found = await alice.discover_peer(party_id, "bob")
        assert set(found) == PEER_KEYS
        assert found["nat_type"] == "symmetric" and found["public_key"] == key(2)

        assert await bob.heartbeat(party_id, "bob") is None

        assert await bob.leave_party(party_id, "bob") == "left"
        assert set(await alice.get_peers(party_id)) == {"alice"}
        assert await alice.leave_party(party_id, "alice") == "party_deleted"
        await alice.close()
        await bob.close()
    run(main())


def test_relays(server):
    register_relay(server, "relay-b", "us")
    register_relay(server, "relay-a", "eu")

    async def main():
        async with client(server, peer_id="alice") as alice:
            relays = await alice.list_relays()
            assert [r["relay_id"] for r in relays] == ["relay-a", "relay-b"]
            assert set(relays[0]) == {"relay_id", "public_ip", "port", "region",
                                      "capacity", "registered_at"}
            eu = await alice.get_relays_by_region("eu")
            assert [r["relay_id"] for r in eu] == ["relay-a"]
            assert await alice.get_relays_by_region("asia") == []
    run(main())


def test_a_refusal_carries_status_and_detail(server):
    async def main():
        async with client(server, peer_id="alice") as alice:
            with pytest.raises(ControlPlaneError) as refused:
                await alice.get_party("no-such-party")
            assert refused.value.status == 404
            assert "not found" in refused.value.detail.lower()
            assert str(refused.value) == f"HTTP 404: {refused.value.detail}"

            party = await alice.register_party(None, "LAN", peer("alice", 1))
            with pytest.raises(ControlPlaneError) as refused:
                await alice.discover_peer(party["party_id"], "nobody")
            assert refused.value.status == 404
    run(main())


def test_acting_as_another_peer_is_refused(server):
    async def main():
        async with client(server, peer_id="alice") as alice:
            party = await alice.register_party(None, "LAN", peer("alice", 1))
            for call in (alice.leave_party(party["party_id"], "mallory"),
                         alice.heartbeat(party["party_id"], "mallory"),
                         alice.join_party(party["party_id"], peer("mallory", 3))):
                with pytest.raises(ControlPlaneError) as refused:
                    await call
                assert refused.value.status == 403
    run(main())


def test_invalid_input_is_a_422_before_sending(server):
    async def main():
        async with client(server, peer_id="alice") as alice:
            with pytest.raises(ControlPlaneError) as refused:
                await alice.register_party(None, "LAN", peer("alice", 1, public_key="nope"))
            assert refused.value.status == 422 and "public_key" in refused.value.detail
            with pytest.raises(ControlPlaneError) as refused:
                await alice.register_party(None, "", peer("alice", 1))
            assert refused.value.status == 422
        with pytest.raises(ControlPlaneError):
            client(server, peer_id="not a valid id")
    run(main())


def test_no_server_is_an_error_without_status():
    async def main():
        nobody = RemoteControlPlaneClient("http://127.0.0.1:9", peer_id="alice",
                                          retries=1, connect_timeout=1.0)
        with pytest.raises(ControlPlaneError) as failed:
            await nobody.initialize()
        assert failed.value.status is None and "cannot reach" in failed.value.detail
    run(main())


def test_events_see_another_member_join_and_leave(server):
    async def main():
        async with client(server, peer_id="alice") as alice, \
                client(server, peer_id="bob") as bob:
            events = await alice.events()
            party = await alice.register_party(None, "LAN", peer("alice", 1))
            party_id = party["party_id"]

            await bob.join_party(party_id, peer("bob", 2))
            joined = await next_event(
                events, lambda e: e.type == "peer_joined" and e.peer["peer_id"] == "bob")
            assert joined.party_id == party_id
            assert set(joined.peer) == PEER_KEYS and isinstance(joined.seq, int)
            assert joined.to_dict()["type"] == "peer_joined"

            await bob.leave_party(party_id, "bob")
            left = await next_event(events, lambda e: e.type == "peer_left")
            assert left.party_id == party_id
            assert left.peer_id == "bob" and left.reason == "left"
            assert left.seq > joined.seq

            with pytest.raises(ControlPlaneError):
                await alice.events()  # handed out once
        # Closing the client ends the iteration.
        assert [e async for e in events if e.type == "peer_joined"] == []
    run(main())


def test_cancelling_a_wait_for_an_event_loses_nothing(server):
    async def main():
        async with client(server, peer_id="alice") as alice, \
                client(server, peer_id="bob") as bob:
            events = await alice.events()
            party = await alice.register_party(None, "LAN", peer("alice", 1))
            def bob_joined(event):
                return event.type == "peer_joined" and event.peer["peer_id"] == "bob"
            waiting = asyncio.ensure_future(next_event(events, bob_joined, timeout=30))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await bob.join_party(party["party_id"], peer("bob", 2))
            joined = await next_event(events, bob_joined)
            assert joined.party_id == party["party_id"]
    run(main())


def test_signals(server):
    async def main():
        async with client(server, peer_id="alice", events=False) as alice, \
                client(server, peer_id="bob") as bob:
            party = await alice.register_party(None, "LAN", peer("alice", 1))
            party_id = party["party_id"]
            await bob.join_party(party_id, peer("bob", 2))
            bob_events = await bob.events()

            await bob.send_signal(party_id, "alice", {"type": "offer", "sdp": "v=0"})
            signals = await alice.poll_signals(party_id)
            assert [(s["from_peer_id"], s["signal_data"]) for s in signals] == \
                [("bob", {"type": "offer", "sdp": "v=0"})]
            assert await alice.poll_signals(party_id) == []

            await alice.send_signal(party_id, "bob", {"type": "answer"})
            got = await next_event(bob_events, lambda e: e.type == "signal")
            assert got.peer_id == "alice" and got.signal["signal_data"] == {"type": "answer"}
    run(main())


@dataclass
class PeerInfo:
    """The original client's peer type, with its to_dict()."""
    peer_id: str
    name: str
    public_key: str
    nat_type: str
    public_ip: str
    public_port: int
    local_ip: str
    local_port: int
    last_seen: datetime

    def to_dict(self) -> dict:
        data = asdict(self)
        data["last_seen"] = self.last_seen.isoformat()
        return data


class PartyManager:
    """A thin stand-in for LANrage's PartyManager: it drives the control
    plane through the original client's methods only."""

    def __init__(self, server_url: str, me: PeerInfo):
        self.me = me
        self.control = RemoteControlPlaneClient(server_url, request_timeout=5.0)
        self.party: dict | None = None

    async def start(self):
        await self.control.initialize()
        await self.control.register_peer(self.me.peer_id)

    async def create_party(self, name: str) -> dict:
        self.party = await self.control.register_party(f"party-{self.me.peer_id}", name, self.me)
        return self.party

    async def join_party(self, party_id: str) -> dict:
        self.party = await self.control.join_party(party_id, self.me)
        return self.party

    async def discover(self) -> list[PeerInfo]:
        peers = await self.control.get_peers(self.party["party_id"])
        return [PeerInfo(**{**p, "last_seen": datetime.fromisoformat(p["last_seen"])})
                for pid, p in peers.items() if pid != self.me.peer_id]

    async def keep_alive(self):
        await self.control.heartbeat(self.party["party_id"], self.me.peer_id)

    async def leave(self) -> str:
        status = await self.control.leave_party(self.party["party_id"], self.me.peer_id)
        self.party = None
        return status

    async def stop(self):
        await self.control.close()


def test_party_manager_flow(server):
    def me(peer_id, n):
        return PeerInfo(peer_id=peer_id, name=peer_id.title(), public_key=key(n),
                        nat_type="unknown", public_ip="unknown", public_port=0,
                        local_ip="192.168.1.30", local_port=51820, last_seen=datetime.now())

    async def main():
        host, guest = PartyManager(server, me("host", 1)), PartyManager(server, me("guest", 2))
        await host.start()
        await guest.start()

        party = await host.create_party("Game night")
        await guest.join_party(party["party_id"])

        [seen_by_host] = await host.discover()
        [seen_by_guest] = await guest.discover()
        assert seen_by_host.peer_id == "guest" and seen_by_host.public_key == key(2)
        assert seen_by_guest.peer_id == "host" and seen_by_guest.public_ip == "unknown"

        await host.keep_alive()
        await guest.keep_alive()

        assert await guest.leave() == "left"
        assert await host.discover() == []
        assert await host.leave() == "party_deleted"
        await host.stop()
        await guest.stop()
    run(main())


def test_capabilities_the_server_announces(server):
    register_relay(server, "relay-eu", "eu")

    async def main():
        async with client(server, peer_id="alice") as alice, \
                client(server, peer_id="bob") as bob, \
                client(server, peer_id="carol") as carol:
            assert set(await alice.features()) >= {
                "invites", "host-migration", "relay-choice", "path-plan"}

            party = await alice.register_party(
                None, "LAN", peer("alice", 1), settings={"host_policy": "migrate"})
            party_id = party["party_id"]
            assert (await alice.get_settings(party_id))["settings"]["host_policy"] == "migrate"
            changed = await alice.update_settings(party_id, {"join_policy": "invite"})
            assert changed["settings"]["join_policy"] == "invite"

            # Invite-only: a plain join is refused, a code admits.
            with pytest.raises(ControlPlaneError) as refused:
                await bob.join_party(party_id, peer("bob", 2))
            assert refused.value.status == 403
            invite = await alice.create_invite(party_id, max_uses=1, ttl_secs=600)
            assert [i["nameplate"] for i in await alice.list_invites(party_id)] == \
                [invite["nameplate"]]
            preview = await bob.preview_invite(invite["code"].lower().replace("-", " "))
            assert preview["party_id"] == party_id and preview["uses_left"] == 1
            joined = await bob.join_by_code(invite["code"], peer("bob", 2))
            assert set(joined["peers"]) == {"alice", "bob"}
            with pytest.raises(ControlPlaneError) as used_up:
                await carol.join_by_code(invite["code"], peer("carol", 3))
            assert used_up.value.status == 404
            second = await alice.create_invite(party_id)
            await alice.revoke_invite(party_id, second["nameplate"])
            assert await alice.list_invites(party_id) == []

            # Host authority: a stale epoch is refused, then the transfer.
            details = await alice.get_party_details(party_id)
            epoch = details["host_epoch"]
            with pytest.raises(ControlPlaneError) as stale:
                await alice.transfer_host(party_id, "bob", expected_epoch=epoch + 1)
            assert stale.value.status == 409
            moved = await alice.transfer_host(party_id, "bob", expected_epoch=epoch)
            assert moved["party"]["host_id"] == "bob" and moved["host_epoch"] == epoch + 1
            kicked = await bob.kick(party_id, "alice", ban=True)
            assert kicked["banned"] is True
            assert set(await bob.get_peers(party_id)) == {"bob"}

            # Relay choice: one measured member gives a recommendation.
            answer = await bob.report_relay_rtts(party_id, {"relay-eu": 20.5, "gone": None})
            assert answer["ignored"] == ["gone"]
            deadline = time.monotonic() + 10
            while (choice := await bob.get_relay_recommendation(party_id))["relay"] is None:
                assert time.monotonic() < deadline, choice
                await asyncio.sleep(0.2)
            assert choice["relay"]["relay_id"] == "relay-eu" and choice["reason"]

            # Path plan: reports are taken; the plan is per pair.
            await bob.report_nat(party_id, {"mapping": "endpoint_independent",
                                            "filtering": "address_dependent"})
            await bob.update_settings(party_id, {"join_policy": "open"})
            await carol.join_party(party_id, peer("carol", 3))
            await bob.report_paths(party_id, [{"peer_id": "carol", "outcome": "direct",
                                               "rtt_ms": 12.0}])
            plan = await bob.get_path_plan(party_id)
            assert plan["party_id"] == party_id
            assert [(p["a"], p["b"]) for p in plan["pairs"]] == [("bob", "carol")]
            assert plan["pairs"][0]["plan"] in {"lan", "direct", "attempt", "relay"}
            with pytest.raises(ControlPlaneError) as bad:
                await bob.report_paths(party_id, [{"peer_id": "nobody", "outcome": "sideways"}])
            assert bad.value.status == 422
    run(main())


def test_events_resume_across_a_server_restart(live_server):
    async def main():
        url = live_server.url
        async with client(url, peer_id="alice") as alice, \
                client(url, peer_id="bob", events=False) as bob:
            events = await alice.events()
            party = await alice.register_party(None, "LAN", peer("alice", 1))
            party_id = party["party_id"]
            await bob.join_party(party_id, peer("bob", 2))
            first = await next_event(
                events, lambda e: e.type == "peer_joined" and e.peer["peer_id"] == "bob")

            await asyncio.to_thread(live_server.restart)
            assert live_server.url == url
            # Bob leaves while Alice's socket may still be down: resume
            # replays what she missed, in order, with nothing lost.
            assert await bob.leave_party(party_id, "bob") == "left"
            seen = []
            left = await next_event(
                events, lambda e: seen.append(e) or e.type == "peer_left", timeout=30)
            assert left.peer_id == "bob"
            kinds = [e.type for e in seen]
            assert "reconnecting" in kinds or "disconnected" in kinds, kinds
            assert "lagged" not in kinds
            # Every party event after the first join, each once, no gap.
            seqs = [e.seq for e in seen if e.seq is not None]
            assert seqs == list(range(first.seq + 1, left.seq + 1)), (kinds, seqs)

            # The party is still hers after the restart.
            assert set(await alice.get_peers(party_id)) == {"alice"}
    run(main())


def test_local_fallback(tmp_path):
    async def main():
        state = tmp_path / "lanrage"
        state.mkdir()
        # No server configured: the local plane, saying so.
        alice = await create_control_plane(None, "alice", state_dir=state)
        assert isinstance(alice, LocalControlPlaneClient)
        assert alice.fallback_reason == "no server configured"
        # A server that does not answer: the local plane too, quickly.
        started = time.monotonic()
        bob = await create_control_plane("http://127.0.0.1:9", "bob", state_dir=state,
                                         first_contact_timeout=2.0, connect_timeout=1.0)
        assert time.monotonic() - started < 10
        assert isinstance(bob, LocalControlPlaneClient)
        assert "unreachable" in bob.fallback_reason

        party = await alice.register_party(None, "LAN", peer("alice", 1))
        assert set(party) == PARTY_KEYS
        party_id = party["party_id"]
        await alice.flush()
        # Instances sharing the folder see each other's parties.
        assert party_id in [p["party"]["party_id"] for p in await bob.discover_parties()]
        joined = await bob.join_party(party_id, peer("bob", 2))
        assert set(joined["peers"]) == {"alice", "bob"}
        assert (await bob.discover_peer(party_id, "alice"))["public_key"] == key(1)
        await bob.send_signal(party_id, "alice", {"type": "offer"})
        await bob.flush()
        signals = await alice.poll_signals(party_id)
        assert [s["signal_data"] for s in signals] == [{"type": "offer"}]
        assert await alice.list_relays() == []

        with pytest.raises(ControlPlaneError) as refused:
            await bob.heartbeat(party_id, "alice")
        assert refused.value.status == 403
        with pytest.raises(ControlPlaneError) as missing:
            await bob.get_party("no-such-party")
        assert missing.value.status == 404

        assert await bob.leave_party(party_id, "bob") == "left"
        await alice.close()
        await bob.close()
    run(main())


def test_create_control_plane_chooses_a_server_that_answers(server):
    async def main():
        plane = await create_control_plane(server, "alice", state_dir=None,
                                           request_timeout=5.0)
        assert isinstance(plane, RemoteControlPlaneClient)
        assert plane.peer_id == "alice"
        party = await plane.register_party(None, "LAN", peer("alice", 1))
        assert (await plane.get_party(party["party_id"]))["host_id"] == "alice"
        await plane.close()
        with pytest.raises(ControlPlaneError) as bad:
            await create_control_plane(server, "not a valid id")
        assert bad.value.status == 422
    run(main())


def test_a_private_key_makes_the_client_its_key_bound_peer(server, tmp_path):
    async def main():
        private_key = base64.b64encode(os.urandom(32)).decode()
        keyed = client(server, private_key=private_key)
        # The peer ID is the one derived from the key (`lr1…`), known before
        # anything is sent and the one the server answers.
        derived = keyed.peer_id
        assert derived is not None and derived.startswith("lr1")
        await keyed.initialize()
        assert keyed.peer_id == derived
        assert await keyed.list_relays() == []
        await keyed.close()

        for options, what in (({"private_key": "not base64"}, "private_key"),
                              ({"ca_cert": str(tmp_path / "missing.pem")}, "ca_cert"),
                              ({"pin_sha256": "xyz"}, "pin_sha256")):
            with pytest.raises(ControlPlaneError) as refused:
                client(server, peer_id="alice", **options)
            assert refused.value.status == 422 and what in refused.value.detail
    run(main())
