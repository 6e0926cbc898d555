//! `GET /metrics`: Prometheus text that moves as traffic flows.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

async fn scrape(app: &crate::helpers::TestApp) -> String {
    app.get_page("/metrics", "application/openmetrics-text")
        .await
}

/// The value of the first sample line starting with `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_follow_requests_sockets_parties_and_signals() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert!(before.contains("lanrage_build_info{version="));
    assert_eq!(value(&before, "lanrage_parties "), 0.0);

    let (alice, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;
    let mut socket = app.ws_as("bob", &bob).await;
    app.post_signal(&party, &alice, "bob", json!({"type": "offer"}))
        .await;
    socket.expect("signal").await;
    app.send(
        Method::GET,
        "/parties/0123456789abcdef0123456789abcdef",
        Some(&alice),
        None,
    )
    .await;

    let after = scrape(&app).await;
    assert_eq!(value(&after, "lanrage_parties "), 1.0);
    assert_eq!(value(&after, "lanrage_peers "), 2.0);
    assert_eq!(
        value(&after, r#"lanrage_db_max_connections{pool="write"}"#),
        1.0
    );
    // A connection goes back to its pool in the background: count both.
    let read_pool = value(
        &after,
        r#"lanrage_db_connections{pool="read",state="idle"}"#,
    ) + value(
        &after,
        r#"lanrage_db_connections{pool="read",state="in_use"}"#,
    );
    assert!(read_pool >= 1.0, "{after}");
    assert!(after.contains(r#"lanrage_db_errors_total{kind="unavailable"} 0"#));
    assert_eq!(value(&after, "lanrage_websocket_connections "), 1.0);
    assert_eq!(value(&after, "lanrage_signals_sent_total "), 1.0);
    assert!(
        value(&after, "lanrage_websocket_messages_sent_total ") >= 2.0,
        "auth_ok and the signal"
    );
    assert_eq!(
        value(
            &after,
            r#"lanrage_http_requests_total{route="/parties/{party_id}/join",method="POST",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"lanrage_http_requests_total{route="/parties/{party_id}",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"lanrage_http_request_duration_seconds_count{route="/parties/{party_id}/join"}"#
        ),
        1.0
    );
    // Signals are marked delivered by a background task.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while value(&scrape(&app).await, "lanrage_signals_delivered_total ") < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A signal read over HTTP is delivered too.
    app.post_signal(&party, &bob, "alice", json!({"type": "answer"}))
        .await;
    let drain = format!("/parties/{party}/signals");
    app.send(Method::GET, &drain, Some(&alice), None).await;
    let text = scrape(&app).await;
    assert_eq!(value(&text, "lanrage_signals_sent_total "), 2.0);
    assert_eq!(value(&text, "lanrage_signals_delivered_total "), 2.0);
    drop(socket);
}

#[tokio::test]
async fn cleanup_removals_are_counted() {
    let app = crate::helpers::spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    app.create_party("alice").await;

    app.cleanup_at(lanrage_proto::Timestamp::now().plus_secs(61))
        .await;

    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"lanrage_cleanup_removed_total{kind="stale_peers"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"lanrage_cleanup_removed_total{kind="ended_parties"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        crate::helpers::test_config(&format!("sqlite://{}", dir.path().join("m.db").display()));
    config.metrics_listen = Some("127.0.0.1:0".into());
    let server = lanrage_server::Server::start(config).await.unwrap();
    let main = server.local_addr().unwrap();
    let metrics = server.metrics_addr().unwrap().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    crate::helpers::install_tls_provider();
    let client = reqwest::Client::new();

    let there = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    let here = client
        .get(format!("http://{main}/metrics"))
        .send()
        .await
        .unwrap();

    assert_eq!(there.status(), StatusCode::OK);
    assert!(there.text().await.unwrap().contains("lanrage_build_info"));
    assert_eq!(here.status(), StatusCode::NOT_FOUND);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_process_reports_cpu_memory_threads_and_descriptors() {
    let app = spawn_app().await;
    let text = scrape(&app).await;
    assert!(value(&text, "lanrage_process_resident_memory_bytes ") > 0.0);
    assert!(value(&text, "lanrage_process_threads ") >= 1.0);
    let open = value(&text, "lanrage_process_open_fds ");
    assert!(open >= 3.0, "{text}");
    let max = value(&text, "lanrage_process_max_fds ");
    assert!(max == -1.0 || max >= open, "{text}");
    assert!(value(&text, "lanrage_process_cpu_seconds_total ") >= 0.0);
}
