"""The Python half of .ci/deploy: reads compose.yaml, writes the nginx
configuration for local processes, and runs the checks through the proxy.

    deploy.py env COMPOSE             the instances' settings, NUL-separated
    deploy.py listening LOG           the address a server logged it bound
    deploy.py nginx-conf CONF PREFIX PORT ADDR1 ADDR2
    deploy.py check PROXY_URL ADDR1 ADDR2   (the relay key in LANRAGE_RELAY_KEY)

Any failed check raises, so the script exits non-zero with the reason.
"""

import asyncio
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.request

import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

INSTANCES = ("control-1", "control-2")
# The test gives these its own values: local addresses instead of compose's
# service names and fixed network. Everything else comes from compose.yaml.
OVERRIDDEN = {"LANRAGE_LISTEN", "LANRAGE_DATABASE_URL", "LANRAGE_TRUSTED_PROXIES"}
# nginx adds this to every answer in the test's configuration only, so a
# check can tell which instance served a request. The shipped one does not
# tell clients its internal addresses.
UPSTREAM_HEADER = "X-Lanrage-Upstream"


class CheckFailed(Exception):
    pass


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


# --- compose.yaml -----------------------------------------------------------


def interpolate(value):
    """compose's ${NAME} and ${NAME:-default}, from this environment."""

    def substitute(match):
        name, default = match.group(1), match.group(3)
        found = os.environ.get(name)
        if default is None:
            require(found is not None, f"compose.yaml uses ${{{name}}} without a default, and it is unset")
            return found
        # As compose: the default also replaces an empty value.
        return found or default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", substitute, str(value))


def environment_of(service):
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(entry.split("=", 1) for entry in environment)
    return {key: interpolate(value) for key, value in environment.items()}


def load_compose(path):
    """The compose file, with the keys this test and the topology rely on."""
    with open(path, encoding="utf-8") as file:
        compose = yaml.safe_load(file)
    services = compose.get("services") or {}
    for name in ("postgres", *INSTANCES, "nginx"):
        require(name in services, f"compose.yaml: no service {name!r}")
    first, second = (services[name] for name in INSTANCES)
    require(
        environment_of(first) == environment_of(second),
        "compose.yaml: the two instances have different environments",
    )
    require(first.get("image") == second.get("image"), "compose.yaml: the instances run different images")
    require(first.get("build") in (".", {"context": "."}), "compose.yaml: the instances are not built from this repository")
    for name in INSTANCES:
        condition = ((services[name].get("depends_on") or {}).get("postgres") or {}).get("condition")
        require(condition == "service_healthy", f"compose.yaml: {name} does not wait for a healthy postgres")
        require(
            environment_of(services[name]).get("LANRAGE_DATABASE_URL", "").startswith("postgres://"),
            f"compose.yaml: {name} is not on PostgreSQL",
        )
    require("healthcheck" in services["postgres"], "compose.yaml: postgres has no healthcheck")
    nginx = services["nginx"]
    for name in INSTANCES:
        condition = ((nginx.get("depends_on") or {}).get(name) or {}).get("condition")
        require(condition == "service_healthy", f"compose.yaml: nginx does not wait for a healthy {name}")
    require(
        any(str(volume).startswith("./deploy/nginx.conf:") for volume in nginx.get("volumes") or []),
        "compose.yaml: nginx does not use deploy/nginx.conf",
    )
    return compose


def command_env(compose_path):
    compose = load_compose(compose_path)
    environment = environment_of(compose["services"][INSTANCES[0]])
    out = sys.stdout.buffer
    for key, value in environment.items():
        if key not in OVERRIDDEN:
            out.write(f"{key}={value}\0".encode())


def command_listening(log_path):
    # The server's JSON log names the address it bound (port 0 picks one).
    with open(log_path, encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("message", "").endswith("listening"):
                print(entry["address"])
                return


# --- nginx ------------------------------------------------------------------


def command_nginx_conf(conf_path, prefix, port, first, second):
    """A complete nginx.conf for an unprivileged run under PREFIX, holding
    deploy/nginx.conf with only its addresses changed."""
    with open(conf_path, encoding="utf-8") as file:
        site = file.read()
    # An upstream's `server ADDRESS [parameters];`, not the `server {` block.
    upstream_server = r"^(\s*server\s+)([^\s;{]+)([^;\n]*;)"
    servers = re.findall(upstream_server, site, flags=re.M)
    require(len(servers) == 2, f"{conf_path}: expected two upstream `server` lines, found {len(servers)}")
    addresses = iter((first, second))
    site = re.sub(
        upstream_server,
        lambda match: f"{match.group(1)}{next(addresses)}{match.group(3)}",
        site,
        flags=re.M,
    )
    site, listens = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{port};", site, flags=re.M)
    require(listens == 1, f"{conf_path}: expected one `listen` line, found {listens}")
    site, servers_blocks = re.subn(
        r"^server\s*\{",
        f"server {{\n    add_header {UPSTREAM_HEADER} $upstream_addr always;",
        site,
        flags=re.M,
    )
    require(servers_blocks == 1, f"{conf_path}: expected one `server {{` block, found {servers_blocks}")
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # One worker: round robin is per worker, so with one the spread over
    # the instances is predictable.
    print(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
{temp}
{site}
}}"""
    )


# --- checks through the proxy -----------------------------------------------


class Proxy:
    def __init__(self, base, instances):
        self.base = base.rstrip("/")
        self.instances = set(instances)
        self.passed = []

    def ok(self, what):
        self.passed.append(what)
        print(f"  ok   {what}", flush=True)

    def request(self, method, path, token=None, body=None, expect=200):
        """(status, JSON body, instance) of one request through nginx."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        except (OSError, urllib.error.URLError) as error:
            raise CheckFailed(f"{method} {path}: no answer through nginx: {error}") from error
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        require(status == expect, f"{method} {path}: expected {expect}, got {status}: {answer}")
        return answer, headers.get(UPSTREAM_HEADER)


def peer(peer_id, number):
    return {
        "peer_id": peer_id,
        "name": peer_id.capitalize(),
        "public_key": base64.b64encode(bytes([number]) * 32).decode(),
        "nat_type": "unknown",
        "public_ip": "unknown",
        "public_port": 0,
        "local_ip": f"192.168.1.{20 + number}",
        "local_port": 51820,
    }


async def open_socket(proxy, token):
    """A WebSocket through nginx, authenticated by its first message, and
    the instance behind it."""
    url = "ws" + proxy.base[len("http") :] + "/ws"
    try:
        socket = await connect(url, open_timeout=10)
    except (OSError, asyncio.TimeoutError, WebSocketException) as error:
        raise CheckFailed(f"/ws: no WebSocket through nginx: {error!r}") from error
    instance = socket.response.headers.get(UPSTREAM_HEADER)
    require(instance in proxy.instances, f"/ws: nginx named no known instance ({instance!r})")
    await socket.send(json.dumps({"type": "auth", "token": token, "request_id": 1}))
    try:
        reply = json.loads(await asyncio.wait_for(socket.recv(), 10))
    except (asyncio.TimeoutError, WebSocketException) as error:
        raise CheckFailed(f"/ws: no answer to auth: {error!r}") from error
    require(reply.get("type") == "auth_ok", f"/ws: expected auth_ok, got {reply}")
    return socket, instance


async def wait_for_join(socket, party_id, peer_id):
    async def receive():
        while True:
            message = json.loads(await socket.recv())
            if (
                message.get("type") == "peer_joined"
                and message.get("party_id") == party_id
                and message.get("peer", {}).get("peer_id") == peer_id
            ):
                return message

    try:
        return await asyncio.wait_for(receive(), 10)
    # asyncio's own before Python 3.11, the builtin since.
    except asyncio.TimeoutError:
        raise CheckFailed(f"/ws: no peer_joined for {peer_id} within 10 s") from None


async def check(base, first, second, relay_key):
    proxy = Proxy(base, (first, second))

    answer, _ = proxy.request("GET", "/livez")
    require(answer == {"status": "ok"}, f"/livez answered {answer}")
    proxy.ok("GET /livez through nginx")
    proxy.request("GET", "/health")
    proxy.ok("GET /health through nginx (the database answers)")
    proxy.request("GET", "/metrics", expect=403)
    proxy.ok("GET /metrics refused at nginx")

    tokens = {}
    for name in ("alice", "bob", "carol"):
        answer, _ = proxy.request("POST", f"/auth/register?peer_id={name}")
        tokens[name] = answer["token"]
    proxy.ok("three peers registered")

    answer, created_on = proxy.request(
        "POST", "/parties", tokens["alice"], {"name": "Deploy check", "host_peer_info": peer("alice", 1)}
    )
    party_id = answer["party_id"]
    answer, joined_on = proxy.request(
        "POST", f"/parties/{party_id}/join", tokens["bob"], {"party_id": party_id, "peer_info": peer("bob", 2)}
    )
    require(answer["virtual_ip"] == "10.66.0.2", f"bob's join: {answer}")
    proxy.ok(f"party created (via {created_on}) and joined (via {joined_on})")

    seen = set()
    for reader in ("alice", "bob") * 3:
        answer, instance = proxy.request("GET", f"/parties/{party_id}", tokens[reader])
        require(
            sorted(answer["party"]["peers"]) == ["alice", "bob"],
            f"a read via {instance} shows members {sorted(answer['party']['peers'])}",
        )
        seen.add(instance)
    require(seen == proxy.instances, f"six party reads reached only {sorted(seen)}")
    proxy.ok("six party reads, both members on both instances")

    relay = {"relay_id": "deploy-1", "public_ip": "198.51.100.10", "port": 51820, "region": "eu"}
    proxy.request("POST", "/relays", relay_key, relay)
    seen = set()
    for _ in range(4):
        _, instance = proxy.request("POST", "/relays/deploy-1/status", relay_key, {"sessions": 1})
        seen.add(instance)
    require(seen == proxy.instances, f"relay status reached only {sorted(seen)}")
    proxy.request("POST", "/relays/deploy-1/status", "not-the-relay-key", {"sessions": 1}, expect=403)
    answer, _ = proxy.request("GET", "/relays/eu", tokens["bob"])
    require([r["relay_id"] for r in answer["relays"]] == ["deploy-1"], f"/relays/eu: {answer}")
    proxy.ok("one relay key accepted by both instances, a wrong one refused")

    # One socket per instance, so that wherever nginx sends the join, a
    # socket on the other instance must hear of it through PostgreSQL.
    sockets = {}
    try:
        for name in ("alice", "bob"):
            for _ in range(6):
                socket, instance = await open_socket(proxy, tokens[name])
                if instance not in sockets:
                    sockets[instance] = (name, socket)
                    break
                await socket.close()
        require(len(sockets) == 2, f"six WebSockets all reached {sorted(sockets)}")
        _, joined_on = proxy.request(
            "POST",
            f"/parties/{party_id}/join",
            tokens["carol"],
            {"party_id": party_id, "peer_info": peer("carol", 3)},
        )
        for instance, (name, socket) in sockets.items():
            event = await wait_for_join(socket, party_id, "carol")
            require(event["peer"]["public_key"] == peer("carol", 3)["public_key"], f"peer_joined: {event}")
            where = "the other instance" if instance != joined_on else "its own instance"
            proxy.ok(f"{name}'s socket via {instance} saw carol's join through {where}")
    finally:
        for _, socket in sockets.values():
            await socket.close()

    return proxy.passed


def command_check(base, first, second):
    relay_key = os.environ.get("LANRAGE_RELAY_KEY")
    require(relay_key, "LANRAGE_RELAY_KEY is not set: the instances' relay key")
    try:
        passed = asyncio.run(check(base, first, second, relay_key))
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy: {len(passed)} passed, 0 failed")


def main():
    commands = {"env": command_env, "listening": command_listening, "nginx-conf": command_nginx_conf, "check": command_check}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(commands)}}} ...")
    try:
        commands[sys.argv[1]](*sys.argv[2:])
    except CheckFailed as failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
