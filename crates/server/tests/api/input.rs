//! Bad input of every kind: a clear 4xx, `{"detail"}`, and no change.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{
    Route::{Create, Join, ReadParty},
    TestApp, peer_info, spawn_app,
};

const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

/// A create body with `field` of the host set to `value` (or removed).
fn create_with(field: &str, value: Option<Value>) -> Value {
    let mut info = peer_info("alice");
    match value {
        Some(value) => info[field] = value,
        None => {
            info.as_object_mut().unwrap().remove(field);
        }
    }
    json!({"name": "LAN", "host_peer_info": info})
}

/// `POST /parties` as `token` with `body` sent as it is, under
/// `content_type` if one is given.
async fn post_raw(
    app: &TestApp,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/parties")).bearer_auth(token);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn invalid_peer_fields_are_422_and_create_nothing() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let cases = [
        ("peer_id", Some(json!("alice bob"))),
        ("peer_id", Some(json!(""))),
        ("peer_id", Some(json!(42))),
        ("name", Some(json!(""))),
        ("name", Some(json!("n".repeat(101)))),
        ("name", Some(json!(null))),
        ("public_key", Some(json!("short"))),
        ("public_key", Some(json!("A".repeat(44)))),
        ("nat_type", Some(json!("cone"))),
        ("nat_type", Some(json!(1))),
        ("public_ip", Some(json!("999.1.1.1"))),
        ("public_ip", Some(json!("localhost"))),
        ("local_ip", Some(json!(""))),
        ("public_port", Some(json!(65536))),
        ("public_port", Some(json!(-1))),
        ("public_port", Some(json!("51820"))),
        ("local_port", Some(json!(1.5))),
        ("public_key", None),
        ("nat_type", None),
        ("local_port", None),
    ];
    for (field, value) in cases {
        let create = Create(create_with(field, value.clone()));
        let detail = app.refused(create, &token, UNPROCESSABLE).await;
        assert!(detail.contains(field), "{field}={value:?}: {detail}");
    }
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn names_are_bounded_in_characters_not_bytes() {
    let app = spawn_app().await;
    let token = app.register("alice").await;

    let mut body = create_with("name", Some(json!("é".repeat(100))));
    body["name"] = json!("🎮".repeat(100));
    let _: Value = app.call(Create(body.clone()), &token).await;
    body["name"] = json!("🎮".repeat(101));
    app.refused(Create(body), &token, UNPROCESSABLE).await;
}

#[tokio::test]
async fn ipv6_and_unknown_addresses_are_accepted() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let mut body = create_with("public_ip", Some(json!("2001:db8::42")));
    body["host_peer_info"]["local_ip"] = json!("unknown");
    body["host_peer_info"]["public_port"] = json!(65535);

    let created: Value = app.call(Create(body), &token).await;

    assert_eq!(
        created["party"]["peers"]["alice"]["public_ip"],
        "2001:db8::42"
    );
    assert_eq!(created["party"]["peers"]["alice"]["local_ip"], "unknown");
}

#[tokio::test]
async fn malformed_json_is_422() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    for body in [
        "",
        "{",
        "not json",
        "[]",
        "null",
        "{\"name\": \"x\"",
        "{} trailing",
        "\u{feff}{}",
    ] {
        let response = post_raw(&app, &token, Some("application/json"), body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body:?}"
        );
        let error: lanrage_proto::ErrorBody = response.json().await.unwrap();
        assert!(!error.detail.is_empty());
    }
    let invalid_utf8 = post_raw(&app, &token, None, vec![b'{', 0xff, b'}']).await;
    assert_eq!(invalid_utf8.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn any_content_type_is_read_as_json_and_unknown_keys_are_ignored() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let mut body = create_with("extra", Some(json!({"nested": true})));
    body["also_unknown"] = json!(1);

    let response = post_raw(&app, &token, Some("text/plain"), body.to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let mut body = create_with("padding", Some(json!("x".repeat(70 * 1024))));

    let detail = app
        .refused(Create(body.clone()), &token, StatusCode::PAYLOAD_TOO_LARGE)
        .await;
    assert!(detail.contains("65536"), "{detail}");

    // Counted in characters: 60 Ki two-byte characters (120 KiB) fit.
    body["host_peer_info"]["padding"] = json!("é".repeat(60 * 1024));
    let _: Value = app.call(Create(body), &token).await;

    let huge = post_raw(&app, &token, None, vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn strange_paths_are_404_not_500() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    for path in [
        "/parties/..%2F..%2Fetc",
        "/parties/%00",
        "/parties/%FF%FE",
        "/parties/a%20b/peers",
        &format!("/parties/{}", "a".repeat(5000)),
        "/parties/x/peers/%2e%2e",
        "/parties/x/peers/y/z",
        "/nope",
        "/parties/",
    ] {
        let response = app.send(Method::GET, path, Some(&token), None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let error: lanrage_proto::ErrorBody = response.json().await.unwrap();
        assert!(!error.detail.is_empty());
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_a_detail() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::PUT, "/"),
        (Method::DELETE, "/parties"),
        (Method::GET, "/auth/register"),
    ] {
        app.expect_error(method, path, None, None, StatusCode::METHOD_NOT_ALLOWED)
            .await;
    }
}

#[tokio::test]
async fn cors_allows_any_origin_by_default() {
    let app = spawn_app().await;

    let response = app
        .client
        .request(Method::OPTIONS, app.url("/parties"))
        .header(header::ORIGIN, "https://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );
}

#[tokio::test]
async fn cors_origins_can_be_restricted() {
    let app =
        crate::helpers::spawn_app_with(|c| c.cors_origins = vec!["https://lanrage.example".into()])
            .await;

    let allowed = app
        .client
        .get(app.url("/"))
        .header(header::ORIGIN, "https://lanrage.example")
        .send()
        .await
        .unwrap();
    let other = app
        .client
        .get(app.url("/"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();

    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://lanrage.example"
    );
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn arrays_in_place_of_objects_are_422() {
    let app = spawn_app().await;
    let (party, bob) = app.party_and_outsider("bob").await;
    let fields = json!([
        "bob",
        "Bob",
        crate::helpers::key_for("bob"),
        "open",
        "unknown",
        0,
        "1.2.3.4",
        1
    ]);

    for body in [
        json!([party, fields]),
        json!({"party_id": party, "peer_info": fields}),
    ] {
        app.refused(Join(&party, body), &bob, UNPROCESSABLE).await;
    }
    assert_eq!(app.party_count().await, 1);
    app.refused(ReadParty(&party), &bob, StatusCode::FORBIDDEN)
        .await;
}

#[tokio::test]
async fn oversized_bodies_are_413_on_every_route() {
    let app = spawn_app().await;
    let big = vec![b'x'; 1024 * 1024];

    let register = app
        .client
        .post(app.url("/auth/register?peer_id=alice"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let root = app.client.get(app.url("/")).body(big).send().await.unwrap();

    assert_eq!(register.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(root.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: lanrage_proto::ErrorBody = register.json().await.unwrap();
    assert!(error.detail.contains("exceeds"));
}
