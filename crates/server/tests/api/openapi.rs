//! `GET /openapi.json` and `/docs`: the document describes what the router
//! serves, and the documentation page needs nothing from the internet.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

async fn document(app: &TestApp) -> Value {
    let response = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Every `(method, path)` the document lists.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_covers_the_contract() {
    let app = spawn_app().await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    let operations = operations(&document);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/auth/register"),
        ("POST", "/auth/rotate"),
        ("POST", "/auth/logout"),
        ("POST", "/admin/peers/{peer_id}/revoke"),
        ("DELETE", "/admin/peers/{peer_id}/ban"),
        ("POST", "/parties"),
        ("POST", "/parties/{party_id}/join"),
        ("DELETE", "/parties/{party_id}/peers/{peer_id}"),
        ("GET", "/parties/{party_id}"),
        ("GET", "/parties/{party_id}/peers"),
        ("GET", "/parties/{party_id}/peers/{peer_id}"),
        ("POST", "/parties/{party_id}/peers/{peer_id}/heartbeat"),
        ("POST", "/parties/{party_id}/signals"),
        ("GET", "/parties/{party_id}/signals"),
        ("GET", "/parties/{party_id}/settings"),
        ("PATCH", "/parties/{party_id}/settings"),
        ("POST", "/parties/{party_id}/host"),
        ("DELETE", "/parties/{party_id}/members/{peer_id}"),
        ("POST", "/parties/{party_id}/invites"),
        ("GET", "/parties/{party_id}/invites"),
        ("DELETE", "/parties/{party_id}/invites/{nameplate}"),
        ("GET", "/invites/{code}"),
        ("POST", "/invites/{code}/join"),
        ("PUT", "/parties/{party_id}/peers/{peer_id}/relay-rtts"),
        ("PUT", "/parties/{party_id}/peers/{peer_id}/nat"),
        ("POST", "/parties/{party_id}/paths"),
        ("GET", "/parties/{party_id}/paths"),
        ("GET", "/admin/paths/stats"),
        ("GET", "/parties/{party_id}/relay"),
        ("POST", "/relays/{relay_id}/status"),
        ("GET", "/relays/status"),
        ("POST", "/relays"),
        ("GET", "/relays"),
        ("GET", "/relays/{key}"),
        ("DELETE", "/relays/{key}"),
        ("GET", "/ws"),
        ("GET", "/health"),
        ("GET", "/livez"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ] {
        assert!(
            operations.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not documented"
        );
    }

    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["peer_token"]["scheme"], "bearer");
    assert_eq!(schemes["relay_key"]["scheme"], "bearer");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    for (method, path) in &operations {
        let operation = &document["paths"][path][method.to_lowercase()];
        let security = operation["security"].to_string();
        let expected = match (method.as_str(), path.as_str()) {
            ("POST", "/relays" | "/relays/{relay_id}/status") | ("DELETE", "/relays/{key}") => {
                "relay_key"
            }
            (_, path) if path.starts_with("/admin/") => "admin_key",
            ("POST", "/auth/rotate" | "/auth/logout") => "peer_token",
            (_, path)
                if path.starts_with("/parties")
                    || path.starts_with("/relays")
                    || path.starts_with("/invites") =>
            {
                "peer_token"
            }
            _ => "",
        };
        if expected.is_empty() {
            assert!(
                !operation["security"]
                    .as_array()
                    .is_some_and(|alternatives| alternatives
                        .iter()
                        .all(|a| a.as_object().is_some_and(|a| !a.is_empty()))),
                "{method} {path} should not require credentials: {security}"
            );
        } else {
            assert!(security.contains(expected), "{method} {path}: {security}");
        }
        // Every error answer is described as `{"detail"}`.
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["required"],
                    serde_json::json!(["detail"]),
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_contract_objects_are_closed_with_exactly_their_keys() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let schemas = &document["components"]["schemas"];
    for (name, keys) in [
        (
            "Peer",
            &[
                "peer_id",
                "name",
                "public_key",
                "nat_type",
                "public_ip",
                "public_port",
                "local_ip",
                "local_port",
                "last_seen",
            ][..],
        ),
        (
            "Party",
            &["party_id", "name", "host_id", "created_at", "peers"][..],
        ),
        (
            "Relay",
            &[
                "relay_id",
                "public_ip",
                "port",
                "region",
                "capacity",
                "registered_at",
            ][..],
        ),
    ] {
        let schema = &schemas[name];
        assert_eq!(schema["additionalProperties"], false, "{name}");
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(properties, keys.iter().copied().collect(), "{name}");
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(required, keys.iter().copied().collect(), "{name}");
    }
    // Request bodies ignore unknown keys, so their schemas allow them.
    assert_eq!(schemas["PeerInfo"].get("additionalProperties"), None);
}

/// A concrete path for a documented template.
fn concrete(template: &str) -> String {
    template
        .replace("{party_id}", "p1")
        .replace("{peer_id}", "peer-1")
        .replace("{key}", "eu-west")
        .replace("{file}", "nothing.css")
}

#[tokio::test]
async fn documented_methods_are_served_and_the_others_are_405() {
    let app = spawn_app().await;
    let documented = operations(&document(&app).await);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let response = app
                .client
                .request(method.clone(), app.url(&concrete(path)))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let allow = response.headers().get("allow").cloned();
            let detail = response.json::<Value>().await.unwrap_or_default()["detail"].clone();
            if documented.contains(&(method.to_string(), path.clone())) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                // The router's own 404 says only "not found"; a route's
                // says what was not found.
                assert_ne!(detail, "not found", "{method} {path} is not routed");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(allow.is_some(), "{method} {path}: 405 without Allow");
            }
        }
    }
}

#[tokio::test]
async fn the_docs_page_loads_only_assets_the_server_embeds() {
    let app = spawn_app().await;
    let html = app.get_page("/docs", "text/html").await;
    assert!(html.contains("<base href=\"/docs/\">"));

    let mut references = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            references.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    assert!(
        references
            .iter()
            .any(|r| r.ends_with("swagger-ui-bundle.js"))
    );
    for reference in references.iter().filter(|r| r.as_str() != "/docs/") {
        assert!(
            !reference.contains("//") && !reference.starts_with('/'),
            "{reference} is not an embedded asset"
        );
        let name = reference.trim_start_matches("./");
        let response = app
            .send(Method::GET, &format!("/docs/{name}"), None, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{name}");
    }

    // The page's configuration points at this server's document and turns
    // off Swagger's online validator.
    let initializer = app.get_text("/docs/swagger-initializer.js").await;
    assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
    assert!(!initializer.contains("http"), "{initializer}");

    let missing = app.send(Method::GET, "/docs/nothing.css", None, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: lanrage_proto::ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.detail, "no such asset");
}

#[tokio::test]
async fn metrics_on_their_own_address_leave_the_document() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let operations = operations(&document(&app).await);
    assert!(!operations.contains(&("GET".into(), "/metrics".into())));
}

#[tokio::test]
async fn every_operation_id_is_unique() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "{id} names two operations");
        }
    }
    assert!(ids.contains("auth_register") && ids.contains("relays_register"));
}

#[tokio::test]
async fn the_docs_page_is_titled_and_served_with_a_trailing_slash_too() {
    let app = spawn_app().await;
    let page = app.get_page("/docs", "text/html").await;
    assert!(
        page.contains("<title>LANrage control plane API</title>"),
        "{page}"
    );
    assert_eq!(app.get_page("/docs/", "text/html").await, page);
}
