//! Limits against abuse on the data path: names, identifiers, signal depth
//! and queues, drains, the event log, resume, and operator credentials.

use lanrage_proto::{PartyResponse, SignalsResponse};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, peer_info, spawn_app};

/// `{"k": [{"k": … {}}]}`: an object nesting `depth` levels of objects and
/// arrays, itself included.
fn nested(depth: usize) -> Value {
    let mut value = json!({});
    for level in 2..=depth {
        value = if level == depth || level % 2 == 0 {
            json!({ "k": value })
        } else {
            json!([value])
        };
    }
    value
}

/// Levels of objects and arrays in `value`, itself included.
fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

async fn send_signal(app: &TestApp, party: &str, token: &str, to: &str, data: Value) -> StatusCode {
    app.send(
        Method::POST,
        &format!("/parties/{party}/signals"),
        Some(token),
        Some(json!({"to_peer_id": to, "signal_data": data})),
    )
    .await
    .status()
}

async fn drain(app: &TestApp, party: &str, token: &str) -> SignalsResponse {
    app.expect(
        Method::GET,
        &format!("/parties/{party}/signals"),
        Some(token),
        None,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn names_with_bidi_controls_or_invisible_formatting_are_422() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for hidden in [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        '\u{200B}', '\u{2060}', '\u{2064}', '\u{FEFF}',
    ] {
        let code = format!("U+{:04X}", u32::from(hidden));
        // As a party name...
        let detail = app
            .expect_error(
                Method::POST,
                "/parties",
                Some(&alice),
                Some(json!({"name": format!("LAN{hidden}night"), "host_peer_info": peer_info("alice")})),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(
            detail.contains("name") && detail.contains(&code),
            "{detail}"
        );
        // ...and as a peer name.
        let mut info = peer_info("alice");
        info["name"] = json!(format!("evil{hidden}gpj.exe"));
        let detail = app
            .expect_error(
                Method::POST,
                "/parties",
                Some(&alice),
                Some(json!({"name": "LAN", "host_peer_info": info})),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(detail.contains(&code), "{detail}");
    }
    assert_eq!(app.party_count().await, 0);

    // Over a socket too.
    let mut socket = app.ws_as("alice", &alice).await;
    socket
        .send(json!({"type": "register_party", "name": "a\u{202E}b", "host_peer": peer_info("alice")}))
        .await;
    let error = socket.expect("error").await;
    assert!(
        error["message"].as_str().unwrap().contains("U+202E"),
        "{error}"
    );
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn names_in_every_script_with_joiners_are_kept_as_sent() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let names = [
        "مرحبا",
        "שלום",
        "金曜日のパーティー",
        "क्\u{200D}ष",
        "می\u{200C}خواهم",
        "👩\u{200D}💻",
    ];
    for (n, name) in names.iter().enumerate() {
        let peer = format!("p{n}");
        let token = app.register(&peer).await;
        let mut info = peer_info(&peer);
        info["name"] = json!(name);
        app.expect::<Value>(
            Method::POST,
            &format!("/parties/{party}/join"),
            Some(&token),
            Some(json!({"party_id": party, "peer_info": info})),
            StatusCode::OK,
        )
        .await;
    }
    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&app.register("p0").await),
            None,
            StatusCode::OK,
        )
        .await;
    for (n, name) in names.iter().enumerate() {
        let peer = lanrage_proto::PeerId::parse(format!("p{n}")).unwrap();
        assert_eq!(read.party.peers[&peer].name.as_str(), *name);
    }
}

#[tokio::test]
async fn peer_ids_made_only_of_dots_are_422_everywhere() {
    let app = spawn_app().await;
    for dots in [".", "..", "..."] {
        let detail = app
            .expect_error(
                Method::POST,
                &format!("/auth/register?peer_id={dots}"),
                None,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(detail.contains("only dots"), "{detail}");
    }

    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let mut info = peer_info("alice");
    info["peer_id"] = json!("..");
    let detail = app
        .expect_error(
            Method::POST,
            &format!("/parties/{party}/join"),
            Some(&alice),
            Some(json!({"party_id": party, "peer_info": info})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(detail.contains("peer_id"), "{detail}");
    let detail = app
        .expect_error(
            Method::POST,
            &format!("/parties/{party}/signals"),
            Some(&alice),
            Some(json!({"to_peer_id": ".", "signal_data": {}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(detail.contains("to_peer_id"), "{detail}");

    let mut socket = app.ws_as("alice", &alice).await;
    socket
        .send(json!({"type": "heartbeat", "party_id": party, "peer_id": ".."}))
        .await;
    let error = socket.expect("error").await;
    assert!(
        error["message"].as_str().unwrap().contains("only dots"),
        "{error}"
    );
    let mut unauthenticated = app.ws().await;
    unauthenticated
        .send(json!({"type": "auth", "peer_id": "...", "token": alice}))
        .await;
    let error = unauthenticated.expect("error").await;
    assert!(
        error["message"].as_str().unwrap().contains("only dots"),
        "{error}"
    );
}

#[tokio::test]
async fn signal_data_deeper_than_32_levels_is_422_and_queues_nothing() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let (bob, _) = app.join(&party, "bob").await;

    // 126 levels: what used to be accepted and then broke every poll.
    for depth in [33, 126] {
        let detail = app
            .expect_error(
                Method::POST,
                &format!("/parties/{party}/signals"),
                Some(&alice),
                Some(json!({"to_peer_id": "bob", "signal_data": nested(depth)})),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(
            detail.contains("signal_data") && detail.contains("32 levels"),
            "{detail}"
        );
    }
    let mut socket = app.ws_as("alice", &alice).await;
    socket
        .send(
            json!({"type": "signal", "party_id": party, "from_peer_id": "alice",
                     "to_peer_id": "bob", "signal_data": nested(40), "request_id": 1}),
        )
        .await;
    let error = socket.expect("error").await;
    assert!(
        error["message"].as_str().unwrap().contains("32 levels"),
        "{error}"
    );
    assert_eq!(error["request_id"], 1);
    assert!(drain(&app, &party, &bob).await.signals.is_empty());

    // 32 levels pass, and the drain answer stays readable.
    assert_eq!(
        send_signal(&app, &party, &alice, "bob", nested(32)).await,
        StatusCode::ACCEPTED
    );
    let drained = drain(&app, &party, &bob).await;
    assert_eq!(drained.signals.len(), 1);
    assert_eq!(depth_of(&drained.signals[0].signal_data.clone().into()), 32);
}
