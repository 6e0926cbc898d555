//! What only the SQLite backend has: a file, WAL mode, file locks.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_database_runs_in_wal_mode() {
    let app = spawn_app().await;
    let mut wal = app.db_path.clone().into_os_string();
    wal.push("-wal");
    app.create_party("alice").await;
    assert!(
        std::path::Path::new(&wal).exists(),
        "no write-ahead log beside the database"
    );
}

/// A connection of "another process" holding the database's write lock
/// until it runs `COMMIT`.
async fn lock_database(app: &crate::helpers::TestApp) -> sqlx::SqliteConnection {
    use sqlx::Connection;

    let url = format!("sqlite://{}", app.db_path.display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    other
}

#[tokio::test]
async fn a_locked_database_answers_503_quickly_then_recovers() {
    let app = spawn_app().await;
    let mut other = lock_database(&app).await;

    let started = std::time::Instant::now();
    let detail = app
        .expect_error(
            Method::POST,
            "/auth/register?peer_id=alice",
            None,
            None,
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(detail.contains("database"), "{detail}");
    // The failed request is counted, once, by its kind.
    app.expect_metric(r#"lanrage_db_errors_total{kind="unavailable"} 1"#)
        .await;

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    app.register("alice").await;
}

#[tokio::test]
async fn writes_queued_behind_a_locked_database_are_all_refused_within_seconds() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("alice").await;
    let tokens = app.register_numbered("peer", 8).await;
    let mut other = lock_database(&app).await;

    // Eight joins queue for the one writer; none may wait for the others'
    // timeouts in turn.
    let started = std::time::Instant::now();
    let path = format!("/parties/{party}/join");
    let joins = tokens.iter().map(|(token, peer)| {
        let body = serde_json::json!({
            "party_id": party,
            "peer_info": crate::helpers::peer_info(peer),
        });
        app.send(Method::POST, &path, Some(token), Some(body))
    });
    let answers = futures_util::future::join_all(joins).await;
    let took = started.elapsed();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(took < std::time::Duration::from_secs(6), "took {took:?}");

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    app.join_with(&party, "peer0", &tokens[0].0).await;
}
