"""The operator's dashboard in headless chromium, for .ci/dashboard.

Usage: dashboard.py BASE_URL WORK_DIR, with LANRAGE_DASHBOARD_ADMIN_KEY and
LANRAGE_DASHBOARD_RELAY_KEY the server's keys. Logs in (a wrong key
first), watches a party made over HTTP appear, gain a member and leave, a
relay appear, names with markup stay text; then checks the key is in
session storage only (no cookie, never in a URL), survives a reload and
is gone after logging out.
"""

import base64
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, WORK = sys.argv[1], sys.argv[2]
ADMIN_KEY = os.environ["LANRAGE_DASHBOARD_ADMIN_KEY"]
RELAY_KEY = os.environ["LANRAGE_DASHBOARD_RELAY_KEY"]
KEY_ITEM = "lanrage.admin-key"
# Markup in user input: it must show as these characters, never as
# elements (and never run).
PARTY_NAME = "LAN <b>night</b>"
ALICE_NAME = "<img src=x onerror=alert(1)>Alice"
WAIT_SECS = 20


def step(text):
    print(f"dashboard: {text}", flush=True)


def http(method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read().decode()}") from None


def peer_info(peer_id, name, local_ip):
    return {
        "peer_id": peer_id,
        "name": name,
        "public_key": base64.b64encode(os.urandom(32)).decode(),
        "nat_type": "unknown",
        "public_ip": "unknown",
        "public_port": 0,
        "local_ip": local_ip,
        "local_port": 51820,
    }


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new",
        # CI runs as root, where chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={WORK}/chromium",
        "--window-size=1280,900",
    ]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given, so selenium never looks for (or downloads) a driver.
    service = Service(executable_path="/usr/bin/chromedriver", log_output=f"{WORK}/chromedriver.log")
    return webdriver.Chrome(options=options, service=service)


class Page:
    def __init__(self, driver):
        self.driver = driver
        self.urls = []

    def until(self, what, check):
        def probe(_):
            try:
                return check()
            except StaleElementReferenceException:
                return False

        try:
            return WebDriverWait(self.driver, WAIT_SECS, poll_frequency=0.1).until(probe)
        except TimeoutException:
            shown = [self.text(i) for i in ("status", "problem", "login-error") if self.find(i)]
            raise AssertionError(f"timed out waiting for {what} (the page says {shown!r})") from None

    def find(self, element_id):
        found = self.driver.find_elements(By.ID, element_id)
        return found[0] if found else None

    def text(self, element_id):
        return self.driver.execute_script(
            "return document.getElementById(arguments[0]).textContent", element_id
        )

    def visible(self, element_id):
        element = self.find(element_id)
        return element is not None and element.is_displayed()

    def note_url(self):
        self.urls.append(self.driver.current_url)

    def stored_key(self):
        return self.driver.execute_script("return sessionStorage.getItem(arguments[0])", KEY_ITEM)

    def log_in(self, key):
        field = self.find("admin-key")
        field.clear()
        field.send_keys(key)
        self.find("login-button").click()
        self.note_url()

    def party(self, party_id):
        """The party's article, as {name, members: {peer_id: row}} or None."""
        return self.driver.execute_script(
            """
            const article = [...document.querySelectorAll('#parties article')]
                .find(a => a.dataset.partyId === arguments[0]);
            if (!article) return null;
            const title = article.querySelector('h3');
            return {
                name: title.textContent,
                markup: title.children.length + article.querySelectorAll('b, img').length,
                members: [...article.querySelectorAll('tbody tr')].map(row => ({
                    peer_id: row.dataset.peerId,
                    cells: [...row.children].map(c => c.textContent),
                    host: row.classList.contains('host'),
                })),
            };
            """,
            party_id,
        )


def main():
    driver = browser()
    try:
        run(Page(driver))
    finally:
        driver.quit()


def run(page):
    driver = page.driver

    step("the page shows the login form")
    driver.get(f"{BASE}/dashboard")
    page.note_url()
    page.until("the login form", lambda: page.visible("login"))
    assert not page.visible("dashboard")
    assert driver.title.startswith("LANrage"), driver.title

    step("a wrong key shows the server's detail and stays on the form")
    page.log_in("not-the-key")
    page.until("the refusal", lambda: page.visible("login-error"))
    assert page.text("login-error") == "invalid admin key", page.text("login-error")
    assert page.visible("login") and not page.visible("dashboard")
    assert page.stored_key() is None

    step("the right key shows the dashboard, with no parties")
    page.log_in(ADMIN_KEY)
    page.until("the dashboard", lambda: page.visible("dashboard"))
    assert not page.visible("login")
    assert page.visible("logout")
    page.until("no parties", lambda: page.visible("no-parties"))
    assert page.text("no-parties") == "No parties."
    page.until("the server's numbers", lambda: page.text("stat-parties") == "0")
    assert page.text("stat-database").startswith("ok ("), page.text("stat-database")
    assert page.find("admin-key").get_attribute("value") == ""
    assert page.stored_key() == ADMIN_KEY

    step("a party created over HTTP appears, with its host")
    alice = http("POST", "/auth/register?peer_id=alice")["token"]
    created = http(
        "POST",
        "/parties",
        alice,
        {"name": PARTY_NAME, "host_peer_info": peer_info("alice", ALICE_NAME, "192.168.1.2")},
    )
    party_id = created["party_id"]
    shown = page.until("the party", lambda: page.party(party_id))
    assert shown["name"] == PARTY_NAME, shown
    assert shown["markup"] == 0, "markup in a name became elements"
    assert not page.visible("no-parties")
    [host] = shown["members"]
    assert host["peer_id"] == "alice" and host["host"], host
    # Peer, name, virtual IP, NAT, last heartbeat, role.
    assert host["cells"][:4] == ["alice", ALICE_NAME, "10.66.0.1", "unknown"], host
    assert re.fullmatch(r"\d+s ago", host["cells"][4]), host
    assert host["cells"][5] == "host", host

    step("a second member joins: 2 members")
    bob = http("POST", "/auth/register?peer_id=bob")["token"]
    http(
        "POST",
        f"/parties/{party_id}/join",
        bob,
        {"party_id": party_id, "peer_info": peer_info("bob", "Bob", "192.168.1.3")},
    )
    shown = page.until("two members", lambda: (p := page.party(party_id)) and len(p["members"]) == 2 and p)
    guest = next(m for m in shown["members"] if m["peer_id"] == "bob")
    assert guest["cells"][1:3] == ["Bob", "10.66.0.2"] and not guest["host"], guest
    page.until("the numbers", lambda: (page.text("stat-parties"), page.text("stat-peers")) == ("1", "2"))
    # Two refreshes apart, the rates are measured.
    page.until("request rate", lambda: re.fullmatch(r"\d+(\.\d)?", page.text("stat-request-rate")))
    assert re.fullmatch(r"\d+(\.\d)?", page.text("stat-message-rate")), page.text("stat-message-rate")

    step("a relay appears with its region and address")
    http(
        "POST",
        "/relays",
        RELAY_KEY,
        {"relay_id": "eu-1", "public_ip": "198.51.100.10", "port": 51820, "region": "eu"},
    )
    row = page.until(
        "the relay",
        lambda: driver.execute_script(
            "const r = document.querySelector('#relays tr');"
            "return r && [...r.children].map(c => c.textContent)"
        ),
    )
    assert row[:4] == ["eu-1", "198.51.100.10:51820", "eu", "active"], row
    assert re.fullmatch(r"\d+s ago", row[6]), row

    step("both leave: the party is gone")
    http("DELETE", f"/parties/{party_id}/peers/bob", bob)
    page.until("one member", lambda: (p := page.party(party_id)) and len(p["members"]) == 1)
    assert http("DELETE", f"/parties/{party_id}/peers/alice", alice)["status"] == "party_deleted"
    page.until("the party to leave", lambda: page.party(party_id) is None)
    page.until("no parties", lambda: page.visible("no-parties"))

    step("the key is in session storage only, never in a cookie or a URL")
    assert page.stored_key() == ADMIN_KEY
    assert driver.execute_script("return document.cookie") == ""
    assert driver.get_cookies() == [], driver.get_cookies()
    assert driver.execute_script("return localStorage.length") == 0
    page.note_url()
    requested = driver.execute_script(
        "return performance.getEntries().map(e => e.name).filter(n => n.startsWith('http'))"
    )
    assert any("/admin/parties" in url for url in requested), requested
    for url in page.urls + requested:
        assert ADMIN_KEY not in url and "not-the-key" not in url, url
    assert all(url == f"{BASE}/dashboard" for url in page.urls), page.urls

    step("a reload keeps the session")
    driver.refresh()
    page.note_url()
    page.until("the dashboard after a reload", lambda: page.visible("dashboard"))
    assert not page.visible("login")
    page.until("a refresh after the reload", lambda: page.text("status").startswith("Updated"))
    assert not page.visible("problem"), page.text("problem")

    step("logging out forgets the key and shows the form")
    page.find("logout").click()
    page.until("the login form", lambda: page.visible("login"))
    assert not page.visible("dashboard")
    assert page.stored_key() is None
    assert driver.execute_script("return document.querySelectorAll('#parties *, #relays *').length") == 0
    driver.refresh()
    page.until("the login form after a reload", lambda: page.visible("login"))

    step("the page ran under its policy without a violation")
    for entry in driver.get_log("browser"):
        message = entry["message"]
        assert "Content Security Policy" not in message, message
        assert "Uncaught" not in message, message
        if entry["level"] == "SEVERE":
            # The wrong key's refusal is the one failed request expected.
            assert "/admin/stats" in message and "403" in message, message
    step("passed")


if __name__ == "__main__":
    # Lead a process group of our own, so .ci/dashboard can end the
    # browser with us; a SIGTERM unwinds through driver.quit().
    os.setpgrp()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
