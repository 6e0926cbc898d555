//! Host authority (DESIGN, "Capabilities beyond v1", sections 2 and 4):
//! party settings, succession, migration when the host leaves or goes
//! quiet, transfer, kick and the member limit, over HTTP and the socket.

use std::time::Duration;

use lanrage_proto::{
    KickResponse, PartyResponse, ServiceInfo, SettingsResponse, StatusResponse, Timestamp,
    TransferHostResponse,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Route, TestApp, create_body, peer_info, spawn_app, spawn_app_with};

const QUIET: Duration = Duration::from_millis(300);

fn settings_path(party: &str) -> String {
    format!("/parties/{party}/settings")
}

impl TestApp {
    /// `PATCH /parties/{party}/settings` as `token` with `patch`.
    async fn patch_settings(&self, party: &str, token: &str, patch: Value) -> reqwest::Response {
        self.send(
            Method::PATCH,
            &settings_path(party),
            Some(token),
            Some(patch),
        )
        .await
    }

    /// Registers `host` and creates a party with `settings`: its token and
    /// the party's id.
    async fn host_with(&self, host: &str, settings: Value) -> (String, String) {
        let token = self.register(host).await;
        let mut body = create_body("Friday LAN", peer_info(host));
        body["settings"] = settings;
        let created: lanrage_proto::CreatePartyResponse =
            self.call(Route::Create(body), &token).await;
        (token, created.party_id.to_string())
    }

    /// `POST /parties/{party}/host` as `token`.
    async fn transfer(&self, party: &str, token: &str, body: Value) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("/parties/{party}/host"),
            Some(token),
            Some(body),
        )
        .await
    }

    /// `DELETE /parties/{party}/members/{peer}` as `token`.
    async fn kick(
        &self,
        party: &str,
        peer: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.send(
            Method::DELETE,
            &format!("/parties/{party}/members/{peer}"),
            Some(token),
            body,
        )
        .await
    }
}

async fn status_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_server_announces_host_migration() {
    let app = spawn_app().await;
    let info: ServiceInfo = app
        .expect(Method::GET, "/", None, None, StatusCode::OK)
        .await;
    assert!(info.has_feature("host-migration"), "{:?}", info.features);
}

#[tokio::test]
async fn a_party_read_carries_settings_epoch_and_succession() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    assert_eq!(party.created.extras.host_epoch, Some(1));
    assert_eq!(
        party
            .created
            .extras
            .settings
            .map(|s| s.host_policy.as_str()),
        Some("end")
    );
    let read = app.read_party(&party.id, &party.bob).await;
    assert_eq!(read.extras.host_epoch, Some(1));
    let succession: Vec<_> = read.extras.succession.unwrap();
    assert_eq!(succession.len(), 1);
    assert_eq!(succession[0].as_str(), "bob");
    let raw: Value = app
        .expect(
            Method::GET,
            &format!("/parties/{}", party.id),
            Some(&party.bob),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        raw["settings"],
        json!({"host_policy": "end", "join_policy": "open", "max_members": null})
    );
}

#[tokio::test]
async fn members_read_settings_and_only_the_host_changes_them() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let outsider = app.register("eve").await;
    let read: SettingsResponse = app
        .expect(
            Method::GET,
            &settings_path(&party.id),
            Some(&party.bob),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(read.settings.max_members, None);
    app.expect_error(
        Method::GET,
        &settings_path(&party.id),
        Some(&outsider),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;

    let mut bob_socket = app.ws_as("bob", &party.bob).await;
    let response = app
        .patch_settings(
            &party.id,
            &party.alice,
            json!({"host_policy": "migrate", "max_members": 8}),
        )
        .await;
    let (status, body) = status_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["host_policy"], "migrate");
    assert_eq!(body["settings"]["max_members"], 8);
    let event = bob_socket.expect("party_settings").await;
    assert_eq!(event["settings"], body["settings"]);
    assert_eq!(event["seq"], body["seq"]);

    let refused = app
        .patch_settings(&party.id, &party.bob, json!({"host_policy": "end"}))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    for bad in [
        json!({"host_policy": "sometimes"}),
        json!({"hostpolicy": "end"}),
        json!({"max_members": 1}),
        json!({"max_members": 300}),
        json!({"join_policy": null}),
        json!(["host_policy"]),
    ] {
        let response = app
            .patch_settings(&party.id, &party.alice, bad.clone())
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let unchanged: SettingsResponse = app
        .expect(
            Method::GET,
            &settings_path(&party.id),
            Some(&party.alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        unchanged.seq,
        body["seq"].as_u64().unwrap(),
        "refusals changed nothing"
    );
    bob_socket.expect_silence(QUIET).await;
}

#[tokio::test]
async fn settings_on_create_are_strict_and_defaults_come_from_the_server() {
    let app = spawn_app_with(|c| c.default_host_policy = lanrage_proto::HostPolicy::Migrate).await;
    let (alice, party) = app.host_with("alice", json!({"max_members": 4})).await;
    let read = app.read_party(&party, &alice).await;
    let settings = read.extras.settings.unwrap();
    assert_eq!(
        settings.host_policy.as_str(),
        "migrate",
        "the server's default"
    );
    assert_eq!(settings.max_members, Some(4));

    let bob = app.register("bob").await;
    let mut body = create_body("x", peer_info("bob"));
    body["settings"] = json!({"max_member": 4});
    app.refused(Route::Create(body), &bob, StatusCode::UNPROCESSABLE_ENTITY)
        .await;
}

#[tokio::test]
async fn a_full_party_refuses_newcomers_but_members_refresh() {
    let app = spawn_app().await;
    let (alice, party) = app.host_with("alice", json!({"max_members": 2})).await;
    let (bob, _) = app.join(&party, "bob").await;
    let carol = app.register("carol").await;
    let body = crate::helpers::join_body(&party, peer_info("carol"));
    let detail = app
        .refused(Route::Join(&party, body), &carol, StatusCode::CONFLICT)
        .await;
    assert!(detail.contains("full"), "{detail}");
    app.join_with(&party, "bob", &bob).await;

    // Lowering the cap below the count evicts nobody.
    let response = app
        .patch_settings(&party, &alice, json!({"max_members": null}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.join_with(&party, "carol", &carol).await;
    let response = app
        .patch_settings(&party, &alice, json!({"max_members": 2}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.read_party(&party, &alice).await.party.peers.len(), 3);
}

#[tokio::test]
async fn an_invite_only_party_refuses_joins_by_id_but_members_refresh() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let response = app
        .patch_settings(&party.id, &party.alice, json!({"join_policy": "invite"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let carol = app.register("carol").await;
    let body = crate::helpers::join_body(&party.id, peer_info("carol"));
    let detail = app
        .refused(Route::Join(&party.id, body), &carol, StatusCode::FORBIDDEN)
        .await;
    assert!(detail.contains("join code"), "{detail}");
    app.join_with(&party.id, "bob", &party.bob).await;
}

#[tokio::test]
async fn a_migrating_party_outlives_its_host_in_order() {
    let app = spawn_app().await;
    let (alice, party) = app
        .host_with("alice", json!({"host_policy": "migrate"}))
        .await;
    let (bob, _) = app.join(&party, "bob").await;
    let (carol, _) = app.join(&party, "carol").await;
    let mut sockets = [
        app.ws_as("bob", &bob).await,
        app.ws_as("carol", &carol).await,
    ];

    let left = app.leave(&party, "alice", &alice).await;

    assert_eq!(left.status, "left");
    for socket in &mut sockets {
        let gone = socket.expect_left("alice").await;
        assert_eq!(gone["reason"], "left");
        let changed = socket.expect("host_changed").await;
        assert_eq!(changed["old_host_id"], "alice");
        assert_eq!(changed["new_host_id"], "bob", "the first to have joined");
        assert_eq!(changed["reason"], "left");
        assert_eq!(changed["host_epoch"], 2);
        let update = socket.expect("party_update").await;
        assert_eq!(update["party"]["host_id"], "bob");
        let seqs: Vec<_> = [&gone, &changed, &update]
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [4, 5, 6], "consecutive");
    }
    let read: PartyResponse = app.read_party(&party, &carol).await;
    assert_eq!(read.party.host_id.as_str(), "bob");
    assert_eq!(read.extras.host_epoch, Some(2));
    assert_eq!(
        read.extras
            .succession
            .unwrap()
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["carol"]
    );

    // A member reconnecting from before the change gets it replayed.
    let mut late = app.ws_as("carol", &carol).await;
    late.send_resume(&party, 3).await;
    late.expect_left("alice").await;
    late.expect("host_changed").await;
    late.expect("party_update").await;
    late.expect("ack").await;

    app.leave(&party, "bob", &bob).await;
    let last: StatusResponse = app.leave(&party, "carol", &carol).await;
    assert_eq!(last.status, "party_deleted");
}

#[tokio::test]
async fn with_the_default_policy_the_host_leaving_still_ends_the_party() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let left = app.leave(&party.id, "alice", &party.alice).await;
    assert_eq!(left.status, "party_deleted");
}

#[tokio::test]
async fn an_absent_host_is_replaced_by_the_first_present_member() {
    let app = spawn_app_with(|c| c.host_grace_secs = 45).await;
    let (_, party) = app
        .host_with("alice", json!({"host_policy": "migrate"}))
        .await;
    let (_, bob_joined) = app.join(&party, "bob").await;
    let (carol, _) = app.join(&party, "carol").await;
    let party_id = bob_joined.party.party_id.clone();
    let mut watcher = app.ws_as("carol", &carol).await;
    let later = Timestamp::now().plus_secs(46);
    // Carol keeps beating, Bob and Alice went quiet.
    app.touch(&party_id, "carol", later).await;

    let changed = app.service.presence_once(later, false).await.unwrap();

    assert_eq!(changed, 1);
    let event = watcher.expect("host_changed").await;
    assert_eq!(event["new_host_id"], "carol", "bob is absent too");
    assert_eq!(event["reason"], "absent");
    watcher.expect("party_update").await;
    let again = app.service.presence_once(later, false).await.unwrap();
    assert_eq!(again, 0, "exactly once");
    let read = app.read_party(&party, &carol).await;
    assert_eq!(read.party.host_id.as_str(), "carol");
    assert!(
        read.party
            .peers
            .contains_key(&lanrage_proto::PeerId::parse("alice").unwrap())
    );
}

#[tokio::test]
async fn with_nobody_present_the_party_waits_for_its_host() {
    let app = spawn_app().await;
    let (_, party) = app
        .host_with("alice", json!({"host_policy": "migrate"}))
        .await;
    app.join(&party, "bob").await;
    let later = Timestamp::now().plus_secs(46);
    assert_eq!(app.service.presence_once(later, false).await.unwrap(), 0);
}

#[tokio::test]
async fn a_host_gone_quiet_is_replaced_by_a_member_with_an_open_socket_in_real_time() {
    let app = spawn_app_with(|c| c.host_grace_secs = 1).await;
    let (_, party) = app
        .host_with("alice", json!({"host_policy": "migrate"}))
        .await;
    let (bob, _) = app.join(&party, "bob").await;
    let mut bob_socket = app.ws_as("bob", &bob).await;

    // Alice says nothing more; Bob's socket keeps him present.
    let event = tokio::time::timeout(Duration::from_secs(10), bob_socket.expect("host_changed"))
        .await
        .expect("the host is replaced within grace + 5 s");
    assert_eq!(event["new_host_id"], "bob");
    assert_eq!(event["reason"], "absent");
}

#[tokio::test]
async fn succession_lists_only_present_members() {
    let app = spawn_app_with(|c| c.host_grace_secs = 1).await;
    let (alice, party) = app.host_with("alice", json!({})).await;
    let (bob, _) = app.join(&party, "bob").await;
    app.join(&party, "carol").await;
    let _bob_socket = app.ws_as("bob", &bob).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let read = app.read_party(&party, &alice).await;
    let succession: Vec<_> = read.extras.succession.unwrap();
    assert_eq!(
        succession.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
}

#[tokio::test]
async fn the_host_hands_over_with_epoch_fencing() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let (carol, _) = app.join(&party.id, "carol").await;
    let mut watcher = app.ws_as("carol", &carol).await;

    let (status, body) = status_of(
        app.transfer(
            &party.id,
            &party.alice,
            json!({"new_host_id": "bob", "expected_epoch": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done: TransferHostResponse = serde_json::from_value(body).unwrap();
    assert_eq!(done.party.host_id.as_str(), "bob");
    assert_eq!(done.host_epoch, 2);
    let event = watcher.expect("host_changed").await;
    assert_eq!(event["reason"], "transferred");
    let update = watcher.expect("party_update").await;
    assert_eq!(update["seq"].as_u64(), Some(done.seq));

    // The former host is an ordinary member now.
    let refusals = [
        (
            &party.alice,
            json!({"new_host_id": "carol"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &party.bob,
            json!({"new_host_id": "carol", "expected_epoch": 1}),
            StatusCode::CONFLICT,
        ),
        (
            &party.bob,
            json!({"new_host_id": "zed"}),
            StatusCode::NOT_FOUND,
        ),
        (
            &party.bob,
            json!({"new_host_id": "bob"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &party.bob,
            json!({"new_host": "carol"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (token, body, expected) in refusals {
        let response = app.transfer(&party.id, token, body.clone()).await;
        assert_eq!(response.status(), expected, "{body}");
    }
    watcher.expect_silence(QUIET).await;
    let read = app.read_party(&party.id, &carol).await;
    assert_eq!(read.party.host_id.as_str(), "bob");
    assert!(read.party.peers.len() == 3, "nobody left");
}

#[tokio::test]
async fn of_two_transfers_from_one_view_exactly_one_wins() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    app.join(&party.id, "carol").await;
    let to_bob = app.transfer(
        &party.id,
        &party.alice,
        json!({"new_host_id": "bob", "expected_epoch": 1}),
    );
    let to_carol = app.transfer(
        &party.id,
        &party.alice,
        json!({"new_host_id": "carol", "expected_epoch": 1}),
    );
    let (a, b) = tokio::join!(to_bob, to_carol);
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    // The loser is no longer the host (403) or, had it been made host
    // meanwhile, holds a stale epoch (409): never a second success.
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        matches!(statuses[1], StatusCode::FORBIDDEN | StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let read = app.read_party(&party.id, &party.alice).await;
    assert_eq!(read.extras.host_epoch, Some(2));
}

#[tokio::test]
async fn the_host_removes_a_member_who_hears_why() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let (carol, _) = app.join(&party.id, "carol").await;
    let mut bob_socket = app.ws_as("bob", &party.bob).await;
    let mut carol_socket = app.ws_as("carol", &carol).await;

    let (status, body) = status_of(app.kick(&party.id, "bob", &party.alice, None).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kicked: KickResponse = serde_json::from_value(body).unwrap();
    assert_eq!((kicked.status.as_str(), kicked.banned), ("removed", false));
    for socket in [&mut bob_socket, &mut carol_socket] {
        let event = socket.expect_left("bob").await;
        assert_eq!(event["reason"], "kicked");
        assert_eq!(event["seq"].as_u64(), Some(kicked.seq));
    }
    // Without a ban, the peer may come back.
    app.join_with(&party.id, "bob", &party.bob).await;

    let refusals = [
        (&carol, "bob", StatusCode::FORBIDDEN),
        (&party.alice, "alice", StatusCode::UNPROCESSABLE_ENTITY),
        (&party.alice, "zed", StatusCode::NOT_FOUND),
    ];
    for (token, target, expected) in refusals {
        let response = app.kick(&party.id, target, token, None).await;
        assert_eq!(response.status(), expected, "{target}");
    }
}

#[tokio::test]
async fn a_banned_member_cannot_rejoin_until_the_party_ends() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let response = app
        .kick(&party.id, "bob", &party.alice, Some(json!({"ban": true})))
        .await;
    let (status, body) = status_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["banned"], true);
    let body = crate::helpers::join_body(&party.id, peer_info("bob"));
    let detail = app
        .refused(
            Route::Join(&party.id, body),
            &party.bob,
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(detail.contains("banned"), "{detail}");

    // The ban ends with the party.
    app.leave(&party.id, "alice", &party.alice).await;
    let (_, next) = app.create_party("zed").await;
    app.join_with(next.party_id.as_str(), "bob", &party.bob)
        .await;
}

#[tokio::test]
async fn peer_left_says_why() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let (bob, _) = app.join(&party, "bob").await;
    app.join(&party, "carol").await;
    let mut host = app.ws_as("alice", &alice).await;

    app.leave(&party, "bob", &bob).await;
    assert_eq!(host.expect_left("bob").await["reason"], "left");

    let later = Timestamp::now().plus_secs(61);
    app.touch(&created.party_id, "alice", later).await;
    app.cleanup_at(later).await;
    assert_eq!(host.expect_left("carol").await["reason"], "timeout");
}

#[tokio::test]
async fn the_socket_creates_with_settings_transfers_and_kicks() {
    let app = spawn_app().await;
    let (_, mut host) = app.registered_socket("alice").await;
    host.send(
        json!({"type": "register_party", "name": "LAN", "host_peer": peer_info("alice"),
                     "settings": {"host_policy": "migrate"}, "request_id": 1}),
    )
    .await;
    let reply = host.expect_party_reply().await;
    assert_eq!(reply["settings"]["host_policy"], "migrate");
    let party = reply["party"]["party_id"].as_str().unwrap().to_owned();
    app.join(&party, "bob").await;
    app.join(&party, "carol").await;
    host.expect_joined("bob").await;
    host.expect_joined("carol").await;

    host.send(json!({"type": "kick", "party_id": party, "peer_id": "carol", "request_id": 2}))
        .await;
    // The reply and the event may come in either order (on PostgreSQL the
    // event travels through the database's notifications).
    let frames = [host.recv().await, host.recv().await];
    let left = frames.iter().find(|f| f["type"] == "peer_left").unwrap();
    assert_eq!(left["reason"], "kicked");
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(ack["request_id"], 2);

    host.send(
        json!({"type": "transfer_host", "party_id": party, "new_host_id": "bob",
                     "expected_epoch": 1, "request_id": 3}),
    )
    .await;
    let frames = [host.recv().await, host.recv().await, host.recv().await];
    assert!(
        frames.iter().any(|f| f["type"] == "host_changed"),
        "{frames:?}"
    );
    let reply = frames.iter().find(|f| f["request_id"] == 3).unwrap();
    assert_eq!(reply["type"], "party_update");
    assert_eq!(reply["party"]["host_id"], "bob");
    assert_eq!(reply["host_epoch"], 2);

    host.send(
        json!({"type": "transfer_host", "party_id": party, "new_host_id": "bob",
                     "request_id": 4}),
    )
    .await;
    let refused = host.expect("error").await;
    assert_eq!(refused["request_id"], 4);
}
