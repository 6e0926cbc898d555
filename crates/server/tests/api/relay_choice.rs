//! Relay choice (DESIGN, "Capabilities beyond v1", section 5): relays'
//! status, members' round trips, the recommendation, its hysteresis and
//! its announcements.

use std::time::Duration;

use lanrage_proto::{PartyRelayResponse, RelayRttsResponse, RelayStatusesResponse, ServiceInfo};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PartyOfTwo, RELAY_KEY, TestApp, spawn_app, spawn_app_with};

impl TestApp {
    /// Registers relay `id` with the relay key.
    async fn relay(&self, id: &str) {
        self.register_relay(json!({"relay_id": id, "public_ip": "198.51.100.1", "port": 3478}))
            .await;
    }

    async fn relay_status(&self, id: &str, body: Value) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("/relays/{id}/status"),
            Some(RELAY_KEY),
            Some(body),
        )
        .await
    }

    async fn report(&self, party: &str, peer: &str, token: &str, rtts: Value) -> reqwest::Response {
        self.send(
            Method::PUT,
            &format!("/parties/{party}/peers/{peer}/relay-rtts"),
            Some(token),
            Some(json!({"rtts": rtts})),
        )
        .await
    }

    async fn recommendation(&self, party: &str, token: &str) -> PartyRelayResponse {
        self.expect(
            Method::GET,
            &format!("/parties/{party}/relay"),
            Some(token),
            None,
            StatusCode::OK,
        )
        .await
    }

    async fn statuses(&self, token: &str) -> RelayStatusesResponse {
        self.expect(
            Method::GET,
            "/relays/status",
            Some(token),
            None,
            StatusCode::OK,
        )
        .await
    }
}

/// The `relay_recommendation` of `relay` that `socket` receives within
/// 5 s (skipping other frames).
async fn recommended(socket: &mut crate::socket::Socket, relay: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = socket.recv().await;
            if message["type"] == "relay_recommendation" && message["relay_id"] == relay {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{relay} was not recommended within 5 s"))
}

/// A party of alice (host), bob and carol.
async fn party_of_three(app: &TestApp) -> (PartyOfTwo, String) {
    let party = app.party_of_two().await;
    let (carol, _) = app.join(&party.id, "carol").await;
    (party, carol)
}

#[tokio::test]
async fn the_server_announces_relay_choice() {
    let app = spawn_app().await;
    let info: ServiceInfo = app
        .expect(Method::GET, "/", None, None, StatusCode::OK)
        .await;
    assert!(info.has_feature("relay-choice"), "{:?}", info.features);
}

#[tokio::test]
async fn relays_report_their_status_and_everyone_reads_their_state() {
    let app = spawn_app().await;
    for id in ["quiet", "busy", "leaving", "old"] {
        app.relay(id).await;
    }
    let ok = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    };
    ok(app
        .relay_status("busy", json!({"sessions": 3, "load": 0.95}))
        .await)
    .await;
    ok(app.relay_status("leaving", json!({"draining": true})).await).await;
    ok(app.relay_status("old", json!({"load": 0.1})).await).await;
    app.sql("UPDATE relays SET last_status_at = 0 WHERE relay_id = 'old'")
        .await;

    let token = app.register("alice").await;
    let listed = app.statuses(&token).await;
    let state = |id: &str| {
        let relay = listed
            .relays
            .iter()
            .find(|r| r.relay_id.as_str() == id)
            .unwrap();
        (relay.state.clone(), relay.sessions, relay.load)
    };
    assert_eq!(state("quiet"), ("active".into(), None, None), "a v1 relay");
    assert_eq!(state("busy"), ("full".into(), Some(3), Some(0.95)));
    assert_eq!(state("leaving").0, "draining");
    assert_eq!(state("old").0, "stale");
    // A field left out keeps its value.
    ok(app.relay_status("busy", json!({"sessions": 1})).await).await;
    let again: RelayStatusesResponse = app.statuses(RELAY_KEY).await;
    let busy = again
        .relays
        .iter()
        .find(|r| r.relay_id.as_str() == "busy")
        .unwrap();
    assert_eq!((busy.sessions, busy.load), (Some(1), Some(0.95)));

    for (body, expected) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"load": 1.5}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"sessions": -1}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"draining": "yes"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"draining": null}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"load": null}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        assert_eq!(
            app.relay_status("quiet", body.clone()).await.status(),
            expected,
            "{body}"
        );
    }
    assert_eq!(
        app.relay_status("nowhere", json!({"load": 0.1}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let as_peer = app
        .send(
            Method::POST,
            "/relays/quiet/status",
            Some(&token),
            Some(json!({"load": 0.1})),
        )
        .await;
    assert_eq!(as_peer.status(), StatusCode::FORBIDDEN);
    let anonymous = app.send(Method::GET, "/relays/status", None, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_region_status_is_reserved() {
    let app = spawn_app().await;
    let response = app
        .send(
            Method::POST,
            "/relays",
            Some(RELAY_KEY),
            Some(json!({"relay_id": "r", "public_ip": "198.51.100.1", "port": 1, "region": "status"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_worst_pair_picks_the_relay_and_the_answer_explains_it() {
    let app = spawn_app().await;
    app.relay("x").await;
    app.relay("y").await;
    let (party, carol) = party_of_three(&app).await;
    let nobody = app.recommendation(&party.id, &party.alice).await;
    assert_eq!(
        (nobody.relay, nobody.reason.as_str()),
        (None, "no measurements")
    );
    assert_eq!(nobody.unmeasured.len(), 3);

    let mut watcher = app.ws_as("bob", &party.bob).await;
    for (peer, token, x) in [
        ("alice", &party.alice, 10),
        ("bob", &party.bob, 10),
        ("carol", &carol, 90),
    ] {
        let response = app
            .report(&party.id, peer, token, json!({"x": x, "y": 40, "ghost": 5}))
            .await;
        let answer: RelayRttsResponse =
            crate::helpers::read(response, StatusCode::OK, "report").await;
        assert_eq!(
            answer
                .ignored
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
            ["ghost"]
        );
    }

    let choice = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(choice.relay.as_ref().unwrap().relay_id.as_str(), "y");
    assert_eq!(choice.worst_pair_rtt_ms, Some(80));
    assert_eq!(choice.rtt_ms.len(), 3);
    assert!(choice.unmeasured.is_empty());
    assert_eq!(
        choice
            .alternates
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        ["x"]
    );
    // The reports came one by one: alice's alone made x the choice, and
    // carol's made y better by the 20 % it takes to move.
    assert_eq!(choice.reason, "better");
    // Members heard of both, a second apart at most.
    let event = recommended(&mut watcher, "y").await;
    assert_eq!(event["relay_id"], "y");
    assert_eq!(event["worst_pair_rtt_ms"], 80);
}

#[tokio::test]
async fn reports_are_checked_and_only_members_report_for_themselves() {
    let app = spawn_app().await;
    app.relay("x").await;
    let party = app.party_of_two().await;
    let ok = app
        .report(&party.id, "bob", &party.bob, json!({"x": null}))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    for bad in [
        json!({"x": 0}),
        json!({"x": -3}),
        json!({"x": 10_001}),
        json!({"x": "5"}),
    ] {
        let response = app.report(&party.id, "bob", &party.bob, bad.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("r{i}"), json!(5))).collect();
    let response = app
        .report(&party.id, "bob", &party.bob, Value::Object(many))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let as_other = app
        .report(&party.id, "alice", &party.bob, json!({"x": 5}))
        .await;
    assert_eq!(as_other.status(), StatusCode::FORBIDDEN);
    let eve = app.register("eve").await;
    let outsider = app.report(&party.id, "eve", &eve, json!({"x": 5})).await;
    assert_eq!(outsider.status(), StatusCode::FORBIDDEN);
    let read = app
        .send(
            Method::GET,
            &format!("/parties/{}/relay", party.id),
            Some(&eve),
            None,
        )
        .await;
    assert_eq!(read.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_choice_holds_against_small_gains_and_moves_for_big_ones() {
    let app = spawn_app().await;
    app.relay("cur").await;
    app.relay("new").await;
    let party = app.party_of_two().await;
    let both = |cur: u32, new: u32| json!({"cur": cur, "new": new});
    app.report(&party.id, "alice", &party.alice, both(50, 60))
        .await;
    app.report(&party.id, "bob", &party.bob, both(50, 60)).await;
    assert_eq!(
        app.recommendation(&party.id, &party.bob)
            .await
            .relay
            .unwrap()
            .relay_id
            .as_str(),
        "cur"
    );

    // 100 ms now against 85: less than 20 % better, kept.
    app.report(&party.id, "alice", &party.alice, both(50, 42))
        .await;
    app.report(&party.id, "bob", &party.bob, both(50, 43)).await;
    let kept = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(
        (kept.relay.unwrap().relay_id.as_str(), kept.reason.as_str()),
        ("cur", "initial")
    );

    // 100 against 60: moved.
    app.report(&party.id, "alice", &party.alice, both(50, 30))
        .await;
    let moved = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(
        (
            moved.relay.unwrap().relay_id.as_str(),
            moved.reason.as_str()
        ),
        ("new", "better")
    );
}

#[tokio::test]
async fn a_draining_relay_is_left_within_a_second_or_so_and_members_hear_why() {
    let app = spawn_app().await;
    app.relay("a").await;
    app.relay("b").await;
    let party = app.party_of_two().await;
    let mut watcher = app.ws_as("alice", &party.alice).await;
    app.report(&party.id, "alice", &party.alice, json!({"a": 10, "b": 50}))
        .await;
    let first = app.recommendation(&party.id, &party.alice).await;
    assert_eq!(first.relay.unwrap().relay_id.as_str(), "a");

    app.relay_status("a", json!({"draining": true})).await;

    let event = recommended(&mut watcher, "b").await;
    assert_eq!(event["reason"], "current draining");
    let now = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(now.relay.unwrap().relay_id.as_str(), "b");
}

#[tokio::test]
async fn a_member_leaving_takes_its_report_with_it() {
    let app = spawn_app_with(|c| c.rtt_report_ttl_secs = 300).await;
    app.relay("x").await;
    app.relay("y").await;
    let (party, carol) = party_of_three(&app).await;
    app.report(&party.id, "alice", &party.alice, json!({"x": 10, "y": 30}))
        .await;
    app.report(&party.id, "carol", &carol, json!({"x": 100, "y": 30}))
        .await;
    assert_eq!(
        app.recommendation(&party.id, &party.bob)
            .await
            .relay
            .unwrap()
            .relay_id
            .as_str(),
        "y"
    );

    app.leave(&party.id, "carol", &carol).await;

    let answer = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(answer.rtt_ms.len(), 1, "carol's report went with her");
    assert!(answer.unmeasured.iter().any(|p| p.as_str() == "bob"));
}

#[tokio::test]
async fn old_reports_stop_counting() {
    let app = spawn_app().await;
    app.relay("x").await;
    let party = app.party_of_two().await;
    app.report(&party.id, "bob", &party.bob, json!({"x": 20}))
        .await;
    assert_eq!(
        app.recommendation(&party.id, &party.bob)
            .await
            .worst_pair_rtt_ms,
        Some(20)
    );

    // Five minutes later, as far as the database knows.
    app.sql("UPDATE relay_rtts SET reported_at = reported_at - 301000000")
        .await;

    let stale = app.recommendation(&party.id, &party.bob).await;
    assert_eq!(
        (stale.relay, stale.reason.as_str()),
        (None, "no measurements")
    );
    assert_eq!(stale.unmeasured.len(), 2);
}

#[tokio::test]
async fn a_crafted_matrix_table_gives_the_expected_choices() {
    // (reports per member, the relay expected, its cost)
    let cases: [(Value, Value, Option<&str>, Option<u32>); 4] = [
        // One measured member: its own round trip decides.
        (json!({"x": 30, "y": 20}), json!(null), Some("y"), Some(20)),
        // Unreachable for one member: the relay everyone reaches wins.
        (
            json!({"x": 5, "y": 60}),
            json!({"x": null, "y": 60}),
            Some("y"),
            Some(120),
        ),
        // Nobody reaches anything: no candidate.
        (
            json!({"x": null, "y": null}),
            json!({"x": null}),
            None,
            None,
        ),
        // Equal cost: the lower load (x at 0.1, y unknown = 0.5).
        (
            json!({"x": 10, "y": 10}),
            json!({"x": 10, "y": 10}),
            Some("x"),
            Some(20),
        ),
    ];
    for (alice, bob, expected, cost) in cases {
        let app = spawn_app().await;
        app.relay("x").await;
        app.relay("y").await;
        app.relay_status("x", json!({"load": 0.1})).await;
        let party = app.party_of_two().await;
        app.report(&party.id, "alice", &party.alice, alice.clone())
            .await;
        if !bob.is_null() {
            app.report(&party.id, "bob", &party.bob, bob.clone()).await;
        }
        let choice = app.recommendation(&party.id, &party.bob).await;
        let chosen = choice.relay.map(|r| r.relay_id.to_string());
        assert_eq!(chosen.as_deref(), expected, "{alice} {bob}");
        assert_eq!(choice.worst_pair_rtt_ms, cost, "{alice} {bob}");
    }
}
