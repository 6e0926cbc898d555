//! Path plan (DESIGN, "Capabilities beyond v1", section 6): NAT reports,
//! outcomes, the plan per pair by its precedence, learning across the
//! fleet, `path_plan` events, and the relay's cost counting relayed pairs.

use lanrage_proto::{PathPair, PathStatsResponse, PathsResponse, ServiceInfo};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, create_body, join_body, peer_info, spawn_app, spawn_app_with};

const ADMIN_KEY: &str = "path-admin-key";

/// A peer describing itself with this `nat_type` and public address.
fn described(peer: &str, nat_type: &str, public_ip: &str) -> Value {
    let mut info = peer_info(peer);
    info["nat_type"] = json!(nat_type);
    info["public_ip"] = json!(public_ip);
    info
}

impl TestApp {
    /// A party of `host` and `guest` with these NAT types (different
    /// public addresses): the party's ID and both tokens.
    async fn pair(&self, host: (&str, &str), guest: (&str, &str)) -> (String, String, String) {
        let host_token = self.register(host.0).await;
        let created: lanrage_proto::CreatePartyResponse = self
            .call(
                crate::helpers::Route::Create(create_body(
                    "LAN",
                    described(host.0, host.1, "203.0.113.1"),
                )),
                &host_token,
            )
            .await;
        let party = created.party_id.to_string();
        let guest_token = self.register(guest.0).await;
        self.join_as(
            &party,
            &guest_token,
            described(guest.0, guest.1, "198.51.100.2"),
        )
        .await;
        (party, host_token, guest_token)
    }

    /// The party's recommended relay's ID, as `token` reads it.
    async fn relay_of(&self, party: &str, token: &str) -> Option<String> {
        let answer: lanrage_proto::PartyRelayResponse = self
            .expect(
                Method::GET,
                &format!("/parties/{party}/relay"),
                Some(token),
                None,
                StatusCode::OK,
            )
            .await;
        answer.relay.map(|r| r.relay_id.to_string())
    }

    async fn paths(&self, party: &str, token: &str) -> PathsResponse {
        self.expect(
            Method::GET,
            &format!("/parties/{party}/paths"),
            Some(token),
            None,
            StatusCode::OK,
        )
        .await
    }

    async fn outcomes(&self, party: &str, token: &str, reports: Value) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("/parties/{party}/paths"),
            Some(token),
            Some(json!({"reports": reports})),
        )
        .await
    }

    async fn nat(&self, party: &str, peer: &str, token: &str, body: Value) -> reqwest::Response {
        self.send(
            Method::PUT,
            &format!("/parties/{party}/peers/{peer}/nat"),
            Some(token),
            Some(body),
        )
        .await
    }
}

fn only(paths: &PathsResponse) -> &PathPair {
    assert_eq!(paths.pairs.len(), 1, "{paths:?}");
    &paths.pairs[0]
}

fn plan_of(pair: &PathPair) -> (&'static str, f64, Value) {
    (
        pair.plan.as_str(),
        pair.confidence,
        serde_json::to_value(pair.basis).unwrap(),
    )
}

#[tokio::test]
async fn the_server_announces_path_plans() {
    let app = spawn_app().await;
    let info: ServiceInfo = app
        .expect(Method::GET, "/", None, None, StatusCode::OK)
        .await;
    assert!(info.has_feature("path-plan"), "{:?}", info.features);
}

#[tokio::test]
async fn v1_nat_types_get_plans_from_the_table() {
    let app = spawn_app().await;
    for (a, b, plan, confidence) in [
        ("open", "symmetric", "direct", 0.95),
        ("symmetric", "symmetric", "relay", 0.85),
        ("unknown", "port_restricted_cone", "attempt", 0.5),
        ("symmetric", "restricted_cone", "direct", 0.7),
        ("port_restricted_cone", "symmetric", "relay", 0.7),
    ] {
        let (party, token, _) = app
            .pair((&format!("h{a}{b}"), a), (&format!("g{a}{b}"), b))
            .await;
        let paths = app.paths(&party, &token).await;
        assert_eq!(
            plan_of(only(&paths)),
            (plan, confidence, json!("nat_table")),
            "{a} with {b}"
        );
        assert_eq!(only(&paths).rtt_ms, None);
    }
}

#[tokio::test]
async fn the_same_public_address_means_lan() {
    let app = spawn_app().await;
    let host = app.register("host").await;
    let created: lanrage_proto::CreatePartyResponse = app
        .call(
            crate::helpers::Route::Create(create_body(
                "LAN",
                described("host", "symmetric", "203.0.113.1"),
            )),
            &host,
        )
        .await;
    let party = created.party_id.to_string();
    let guest = app.register("guest").await;
    app.join_as(
        &party,
        &guest,
        described("guest", "symmetric", "203.0.113.1"),
    )
    .await;
    let paths = app.paths(&party, &host).await;
    assert_eq!(plan_of(only(&paths)), ("lan", 0.9, json!("same_public_ip")));
}

#[tokio::test]
async fn an_observation_overrides_the_table_then_expires_back() {
    let app = spawn_app().await;
    let (party, host, guest) = app
        .pair(("host", "symmetric"), ("guest", "symmetric"))
        .await;
    assert_eq!(
        app.paths(&party, &host).await.pairs[0].plan.as_str(),
        "relay"
    );
    let mut watcher = app.ws_as("guest", &guest).await;

    let response = app
        .outcomes(
            &party,
            &host,
            json!([{"peer_id": "guest", "outcome": "direct", "rtt_ms": 10}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let paths = app.paths(&party, &guest).await;
    let pair = only(&paths);
    assert_eq!(plan_of(pair), ("direct", 1.0, json!("observed")));
    assert_eq!(
        (pair.rtt_ms, pair.observed.map(|o| o.as_str())),
        (Some(10.0), Some("direct"))
    );
    let event = watcher.expect("path_plan").await;
    assert_eq!(event["pairs"].as_array().unwrap().len(), 1);
    assert_eq!(event["pairs"][0]["plan"], "direct");

    // The other direction: the matrix takes the mean; a round-trip-only
    // change is not pushed.
    app.outcomes(
        &party,
        &guest,
        json!([{"peer_id": "host", "outcome": "direct", "rtt_ms": 20}]),
    )
    .await;
    assert_eq!(only(&app.paths(&party, &host).await).rtt_ms, Some(15.0));
    watcher
        .expect_silence(std::time::Duration::from_millis(300))
        .await;

    app.sql("UPDATE path_reports SET reported_at = reported_at - 301000000")
        .await;
    let expired = app.paths(&party, &host).await;
    assert_eq!(plan_of(only(&expired)), ("relay", 0.85, json!("nat_table")));
    assert_eq!(
        watcher.expect("path_plan").await["pairs"][0]["plan"],
        "relay"
    );
}

#[tokio::test]
async fn a_reported_nat_replaces_the_derived_one() {
    let app = spawn_app().await;
    let (party, host, guest) = app
        .pair(("host", "symmetric"), ("guest", "symmetric"))
        .await;
    assert_eq!(
        app.paths(&party, &host).await.pairs[0].plan.as_str(),
        "relay"
    );
    let body = json!({"mapping": "address_and_port_dependent",
                      "filtering": "address_and_port_dependent", "port_mapping": true});
    assert_eq!(
        app.nat(&party, "guest", &guest, body).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        plan_of(only(&app.paths(&party, &host).await)),
        ("direct", 0.95, json!("nat_table"))
    );
}

#[tokio::test]
async fn the_fleet_learns_per_class_pair_within_its_window() {
    let app = spawn_app_with(|c| c.admin_key = Some(ADMIN_KEY.parse().unwrap())).await;
    // Symmetric with symmetric: the table says relay, the fleet says direct.
    for i in 0..4 {
        let (party, host, _) = app
            .pair(
                (&format!("h{i}"), "symmetric"),
                (&format!("g{i}"), "symmetric"),
            )
            .await;
        for _ in 0..5 {
            app.outcomes(
                &party,
                &host,
                json!([{"peer_id": format!("g{i}"), "outcome": "direct"}]),
            )
            .await;
        }
    }
    let (party, host, _) = app
        .pair(("late", "symmetric"), ("later", "symmetric"))
        .await;
    assert_eq!(
        plan_of(only(&app.paths(&party, &host).await)),
        ("direct", 1.0, json!("statistics"))
    );

    let stats: PathStatsResponse = app
        .expect(
            Method::GET,
            "/admin/paths/stats",
            Some(ADMIN_KEY),
            None,
            StatusCode::OK,
        )
        .await;
    let class = "address_and_port_dependent/address_and_port_dependent";
    let counted = stats
        .classes
        .iter()
        .find(|c| c.a == class && c.b == class)
        .unwrap();
    assert_eq!(
        (counted.direct, counted.relayed, counted.failed),
        (20, 0, 0)
    );
    let refused = app
        .send(Method::GET, "/admin/paths/stats", Some(&host), None)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Out of the window (31 days ago), the table again.
    app.sql("UPDATE path_stats SET day = day - 31").await;
    assert_eq!(
        plan_of(only(&app.paths(&party, &host).await)),
        ("relay", 0.85, json!("nat_table"))
    );
}

#[tokio::test]
async fn the_fleet_can_turn_a_direct_pair_to_relay_too() {
    let app = spawn_app_with(|c| c.path_min_samples = 5).await;
    let (party, host, _) = app.pair(("h", "full_cone"), ("g", "restricted_cone")).await;
    assert_eq!(
        app.paths(&party, &host).await.pairs[0].plan.as_str(),
        "direct"
    );
    let (other, other_host, _) = app
        .pair(("h2", "full_cone"), ("g2", "restricted_cone"))
        .await;
    for _ in 0..5 {
        app.outcomes(
            &other,
            &other_host,
            json!([{"peer_id": "g2", "outcome": "failed"}]),
        )
        .await;
    }
    // The reporting party has its own observation; the other learns.
    assert_eq!(
        plan_of(only(&app.paths(&party, &host).await)),
        ("relay", 1.0, json!("statistics"))
    );
}

#[tokio::test]
async fn every_bad_report_is_refused() {
    let app = spawn_app().await;
    let (party, host, guest) = app.pair(("host", "open"), ("guest", "open")).await;
    let outsider = app.register("eve").await;
    for (token, reports, status) in [
        (
            &host,
            json!([{"peer_id": "guest", "outcome": "maybe"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &host,
            json!([{"peer_id": "guest", "outcome": "direct", "rtt_ms": 0}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &host,
            json!([{"peer_id": "guest", "outcome": "direct", "rtt_ms": 10_001}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &host,
            json!([{"peer_id": "nobody", "outcome": "direct"}]),
            StatusCode::NOT_FOUND,
        ),
        (
            &host,
            json!([{"peer_id": "host", "outcome": "direct"}]),
            StatusCode::NOT_FOUND,
        ),
        (
            &outsider,
            json!([{"peer_id": "guest", "outcome": "direct"}]),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let response = app.outcomes(&party, token, reports.clone()).await;
        assert_eq!(response.status(), status, "{reports}");
    }
    let many: Vec<Value> = (0..65)
        .map(|_| json!({"peer_id": "guest", "outcome": "direct"}))
        .collect();
    assert_eq!(
        app.outcomes(&party, &host, Value::Array(many))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let good = json!({"mapping": "none", "filtering": "none"});
    assert_eq!(
        app.nat(&party, "guest", &host, good.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.nat(&party, "eve", &outsider, good).await.status(),
        StatusCode::FORBIDDEN
    );
    let bad = json!({"mapping": "cone", "filtering": "none"});
    assert_eq!(
        app.nat(&party, "guest", &guest, bad).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let read = app
        .send(
            Method::GET,
            &format!("/parties/{party}/paths"),
            Some(&outsider),
            None,
        )
        .await;
    assert_eq!(read.status(), StatusCode::FORBIDDEN);
    // Nothing was recorded.
    assert_eq!(only(&app.paths(&party, &host).await).observed, None);
}

#[tokio::test]
async fn a_join_into_a_planned_party_pushes_only_the_new_pairs() {
    let app = spawn_app().await;
    let (party, host, guest) = app.pair(("host", "open"), ("guest", "symmetric")).await;
    app.paths(&party, &host).await;
    let mut watcher = app.ws_as("guest", &guest).await;
    let third = app.register("third").await;
    app.call::<Value>(
        crate::helpers::Route::Join(
            &party,
            join_body(&party, described("third", "symmetric", "192.0.2.9")),
        ),
        &third,
    )
    .await;
    watcher.expect_joined("third").await;
    let event = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        watcher.expect("path_plan"),
    )
    .await
    .expect("pushed within a second or so");
    let pairs = event["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "host-third and guest-third only: {event}");
    assert!(pairs.iter().all(|p| p["a"] == "third" || p["b"] == "third"));
}

#[tokio::test]
async fn the_relay_cost_counts_only_pairs_the_plan_relays() {
    let app = spawn_app().await;
    for relay in ["x", "y"] {
        app.register_relay(json!({"relay_id": relay, "public_ip": "198.51.100.1", "port": 1}))
            .await;
    }
    // a and b are open (direct between them); c is symmetric with
    // port-restricted b: relayed; a-c direct (a is open).
    let a = app.register("a").await;
    let created: lanrage_proto::CreatePartyResponse = app
        .call(
            crate::helpers::Route::Create(create_body(
                "LAN",
                described("a", "open", "203.0.113.1"),
            )),
            &a,
        )
        .await;
    let party = created.party_id.to_string();
    let b = app.register("b").await;
    app.join_as(
        &party,
        &b,
        described("b", "port_restricted_cone", "198.51.100.2"),
    )
    .await;
    let c = app.register("c").await;
    app.join_as(&party, &c, described("c", "symmetric", "192.0.2.3"))
        .await;
    let report = |token: &str, peer: &str, x: u32, y: u32| {
        let path = format!("/parties/{party}/peers/{peer}/relay-rtts");
        let token = token.to_owned();
        let app = &app;
        async move {
            app.send(
                Method::PUT,
                &path,
                Some(&token),
                Some(json!({"rtts": {"x": x, "y": y}})),
            )
            .await
        }
    };
    // With every pair counted, a's 100 ms to x decides for y.
    report(&a, "a", 100, 40).await;
    report(&b, "b", 10, 40).await;
    report(&c, "c", 10, 40).await;
    assert_eq!(app.relay_of(&party, &a).await.as_deref(), Some("y"));

    // Once planned, only b-c is relayed: x (10 + 10) beats y by far.
    let plan = app.paths(&party, &a).await;
    let relayed: Vec<_> = plan
        .pairs
        .iter()
        .filter(|p| p.plan.as_str() == "relay")
        .map(|p| (p.a.to_string(), p.b.to_string()))
        .collect();
    assert_eq!(relayed, [("b".to_owned(), "c".to_owned())]);
    report(&c, "c", 10, 40).await;
    assert_eq!(app.relay_of(&party, &a).await.as_deref(), Some("x"));
}
