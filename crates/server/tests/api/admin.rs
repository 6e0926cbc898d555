//! The operator's routes with the admin key: parties a page at a time,
//! one party, ending a party, removing a member, relays with their state,
//! deregistering a relay, and the server's numbers.

use lanrage_proto::{
    AdminPartiesResponse, AdminParty, AdminRelaysResponse, AdminStats, StatusResponse,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{TestApp, spawn_app, spawn_app_with},
    revocation::ADMIN_KEY,
};

async fn admin_app() -> TestApp {
    spawn_app_with(|c| c.admin_key = Some(ADMIN_KEY.parse().unwrap())).await
}

impl TestApp {
    async fn admin<T: serde::de::DeserializeOwned>(&self, method: Method, path: &str) -> T {
        self.expect(method, path, Some(ADMIN_KEY), None, StatusCode::OK)
            .await
    }

    async fn admin_refused(&self, method: Method, path: &str, status: StatusCode) -> String {
        self.expect_error(method, path, Some(ADMIN_KEY), None, status)
            .await
    }
}

const ROUTES: [(&str, &str); 7] = [
    ("GET", "/admin/parties"),
    ("GET", "/admin/parties/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/admin/parties/0123456789abcdef0123456789abcdef"),
    (
        "DELETE",
        "/admin/parties/0123456789abcdef0123456789abcdef/members/bob",
    ),
    ("GET", "/admin/relays"),
    ("DELETE", "/admin/relays/r1"),
    ("GET", "/admin/stats"),
];

#[tokio::test]
async fn every_admin_route_needs_the_configured_admin_key() {
    let unset = spawn_app().await;
    let app = admin_app().await;
    let peer_token = app.register("alice").await;
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        let detail = unset
            .expect_error(
                method.clone(),
                path,
                Some(ADMIN_KEY),
                None,
                StatusCode::FORBIDDEN,
            )
            .await;
        assert!(detail.contains("LANRAGE_ADMIN_KEY"), "{path}: {detail}");
        for key in [peer_token.as_str(), "wrong-key"] {
            app.expect_error(method.clone(), path, Some(key), None, StatusCode::FORBIDDEN)
                .await;
        }
        app.expect_error(method, path, None, None, StatusCode::UNAUTHORIZED)
            .await;
    }
}

#[tokio::test]
async fn parties_come_a_page_at_a_time_with_their_members() {
    let app = admin_app().await;
    let mut ids = Vec::new();
    for host in ["alice", "carol", "erin"] {
        ids.push(app.host_party(host).await.1);
    }
    app.join(&ids[0], "bob").await;
    ids.sort();

    let first: AdminPartiesResponse = app.admin(Method::GET, "/admin/parties?limit=2").await;
    let listed: Vec<String> = first
        .parties
        .iter()
        .map(|p| p.party_id.to_string())
        .collect();
    assert_eq!(listed, ids[..2]);
    let next = first.next_after.expect("a second page");
    assert_eq!(next.as_str(), ids[1]);
    let second: AdminPartiesResponse = app
        .admin(Method::GET, &format!("/admin/parties?after={next}&limit=2"))
        .await;
    assert_eq!(second.parties.len(), 1);
    assert_eq!(second.parties[0].party_id.as_str(), ids[2]);
    assert_eq!(second.next_after, None);

    let all: AdminPartiesResponse = app.admin(Method::GET, "/admin/parties").await;
    let alices = all
        .parties
        .iter()
        .find(|p| p.host_id.as_str() == "alice")
        .unwrap();
    let members: Vec<(&str, String)> = alices
        .members
        .iter()
        .map(|m| (m.peer_id.as_str(), m.virtual_ip.to_string()))
        .collect();
    assert_eq!(
        members,
        [
            ("alice", "10.66.0.1".to_owned()),
            ("bob", "10.66.0.2".to_owned())
        ]
    );
    assert_eq!(all.next_after, None);
}

#[tokio::test]
async fn a_bad_page_is_refused() {
    let app = admin_app().await;
    for query in ["limit=0", "limit=501", "limit=ten", "after=", "page=2"] {
        app.admin_refused(
            Method::GET,
            &format!("/admin/parties?{query}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
}

#[tokio::test]
async fn one_party_shows_members_settings_and_host() {
    let app = admin_app().await;
    let party = app.party_of_two().await;
    let shown: AdminParty = app
        .admin(Method::GET, &format!("/admin/parties/{}", party.id))
        .await;
    assert_eq!(shown.party_id.as_str(), party.id);
    assert_eq!(shown.host_id.as_str(), "alice");
    assert_eq!(shown.host_epoch, 1);
    assert_eq!(shown.members.len(), 2);
    assert_eq!(shown.seq, party.joined.seq);
    assert!(shown.members.iter().all(|m| !m.verified));

    for missing in ["0123456789abcdef0123456789abcdef", "not-a-party-id"] {
        app.admin_refused(
            Method::GET,
            &format!("/admin/parties/{missing}"),
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

#[tokio::test]
async fn ending_a_party_tells_every_member() {
    let app = admin_app().await;
    let (party, mut alice, mut bob) = app.party_of_two_with_sockets().await;
    let path = format!("/admin/parties/{}", party.id);

    let answer: StatusResponse = app.admin(Method::DELETE, &path).await;

    assert_eq!(answer.status, "party_deleted");
    for socket in [&mut alice, &mut bob] {
        let ended = socket.expect("party_ended").await;
        assert_eq!(ended["reason"], "operator");
        assert_eq!(ended["seq"], json!(party.joined.seq + 1));
    }
    app.admin_refused(Method::GET, &path, StatusCode::NOT_FOUND)
        .await;
    app.admin_refused(Method::DELETE, &path, StatusCode::NOT_FOUND)
        .await;
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn removing_a_member_is_a_kick_without_a_ban() {
    let app = admin_app().await;
    let (party, mut alice, mut bob) = app.party_of_two_with_sockets().await;
    let remove = |peer: &str| format!("/admin/parties/{}/members/{peer}", party.id);

    let answer: StatusResponse = app.admin(Method::DELETE, &remove("bob")).await;

    assert_eq!(answer.status, "removed");
    for socket in [&mut alice, &mut bob] {
        let left = socket.expect("peer_left").await;
        assert_eq!(left["peer_id"], "bob");
        assert_eq!(left["reason"], "kicked");
    }
    assert_eq!(
        app.read_party(&party.id, &party.alice)
            .await
            .party
            .peers
            .len(),
        1
    );
    // No ban: bob may come back.
    app.join_with(&party.id, "bob", &party.bob).await;

    for (peer, status) in [
        ("nobody", StatusCode::NOT_FOUND),
        ("not a peer", StatusCode::NOT_FOUND),
    ] {
        app.admin_refused(Method::DELETE, &remove(peer), status)
            .await;
    }
    // The host of a party that ends with its host: the party goes.
    let answer: StatusResponse = app.admin(Method::DELETE, &remove("alice")).await;
    assert_eq!(answer.status, "party_deleted");
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn relays_show_their_state_and_can_be_deregistered() {
    let app = admin_app().await;
    app.register_relay(
        json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 3478, "region": "eu"}),
    )
    .await;

    let listed: AdminRelaysResponse = app.admin(Method::GET, "/admin/relays").await;
    let [relay] = listed.relays.as_slice() else {
        panic!("one relay: {listed:?}");
    };
    assert_eq!(relay.relay.relay_id.as_str(), "r1");
    assert_eq!(relay.relay.region.as_str(), "eu");
    assert_eq!(relay.state, "active");
    assert_eq!((relay.sessions, relay.load), (None, None));
    assert!(relay.last_seen >= relay.relay.registered_at);

    let gone: serde_json::Value = app.admin(Method::DELETE, "/admin/relays/r1").await;
    assert_eq!(gone, json!({"status": "deregistered", "relay_id": "r1"}));
    app.admin_refused(Method::DELETE, "/admin/relays/r1", StatusCode::NOT_FOUND)
        .await;
    let listed: AdminRelaysResponse = app.admin(Method::GET, "/admin/relays").await;
    assert!(listed.relays.is_empty());
}

#[tokio::test]
async fn stats_count_parties_sockets_and_requests() {
    let app = admin_app().await;
    let (_party, _alice, _bob) = app.party_of_two_with_sockets().await;

    let stats: AdminStats = app.admin(Method::GET, "/admin/stats").await;

    assert_eq!((stats.parties, stats.peers, stats.relays), (1, 2, 0));
    assert_eq!(stats.sockets, 2);
    assert!(stats.requests_total >= 4, "{stats:?}");
    assert_eq!(stats.database, "ok");
    assert!(stats.database_ms >= 0.0);
    assert_eq!(stats.version, env!("CARGO_PKG_VERSION"));
}
