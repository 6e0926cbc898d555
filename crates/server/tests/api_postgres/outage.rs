//! A database outage: requests fail fast with 503, the server and its
//! sockets stay up, and everything recovers when the database returns.
//! Runs on a private PostgreSQL cluster the test starts and stops itself.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, spawn_app_with};

/// A throwaway PostgreSQL server in a temporary folder, run as `postgres`.
struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn postgres_bin() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(Result::ok)
        .map(|v| v.path().join("bin"))
        .find(|bin| bin.join("initdb").exists())
}

fn as_postgres(program: &Path, args: &[&str]) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PrivateCluster {
    /// Initializes and starts a cluster, or says why it cannot.
    fn start() -> Result<Self, String> {
        let bin =
            postgres_bin().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("lanrage-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let owned = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !owned {
            return Err("cannot hand a folder to the postgres user (not root?)".into());
        }
        let data = dir.join("data");
        let data = data.to_str().ok_or("temporary path is not UTF-8")?;
        if !as_postgres(
            &bin.join("initdb"),
            &["-D", data, "-U", "postgres", "--auth=trust"],
        ) {
            return Err("initdb failed".into());
        }
        let cluster = Self { dir, bin, port };
        if !cluster.pg_ctl("start") {
            return Err("pg_ctl start failed".into());
        }
        Ok(cluster)
    }

    fn pg_ctl(&self, action: &str) -> bool {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["-D", data.to_str().unwrap_or_default(), "-w", "-m", "fast"];
        if action == "start" {
            args.extend(["-o", &options]);
        }
        args.push(action);
        as_postgres(&self.bin.join("pg_ctl"), &args)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.pg_ctl("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `GET /health` until it answers `status`, for at most 30 s.
async fn wait_for_health(app: &TestApp, status: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if app.send(Method::GET, "/health", None, None).await.status() == status {
            return;
        }
        assert!(Instant::now() < deadline, "/health never answered {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_server_recovers_by_itself() {
    let cluster = match PrivateCluster::start() {
        Ok(cluster) => cluster,
        Err(why) => {
            if std::env::var("LANRAGE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("cannot run the outage test: {why}");
            }
            eprintln!(
                "SKIPPED: the database outage test needs a private PostgreSQL cluster: {why}"
            );
            return;
        }
    };
    let url = cluster.url();
    let app = spawn_app_with(|c| c.database_url = Some(url)).await;
    let (alice, party) = app.host_party("alice").await;
    let mut socket = app.ws_as("alice", &alice).await;

    assert!(cluster.pg_ctl("stop"));

    // Fails fast, with a detail, and the server stays up.
    let started = Instant::now();
    let detail = app
        .expect_error(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(detail.contains("database"), "{detail}");
    // Metrics still answer, and count what the database did.
    let metrics = app.get_text("/metrics").await;
    let unavailable = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"lanrage_db_errors_total{kind="unavailable"} "#))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no unavailable count in\n{metrics}"));
    assert!(unavailable >= 1.0, "{metrics}");
    assert!(metrics.contains(r#"lanrage_db_connections{pool="main",state="idle"}"#));
    wait_for_health(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    socket
        .send(serde_json::json!({"type": "heartbeat", "party_id": party, "peer_id": "alice"}))
        .await;
    let refused = socket.expect("error").await;
    assert!(
        refused["message"].as_str().unwrap().contains("database"),
        "the socket is still served: {refused}"
    );

    assert!(cluster.pg_ctl("start"));

    wait_for_health(&app, StatusCode::OK).await;
    // Writes work again, and the socket learns of them: as the live event,
    // or, if it was committed before the notification connection came
    // back, through the resync snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let joined = loop {
        let token = app
            .send(Method::POST, "/auth/register?peer_id=bob", None, None)
            .await;
        if token.status() == StatusCode::OK {
            let token: lanrage_proto::TokenResponse = token.json().await.unwrap();
            break app.join_with(&party, "bob", &token.token).await;
        }
        assert!(Instant::now() < deadline, "writes never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        let message = socket.recv().await;
        let seq = message["seq"].as_u64().unwrap_or_default();
        let live = message["type"] == "peer_joined" && message["peer"]["peer_id"] == "bob";
        let resynced =
            message["type"] == "party_update" && message["party"]["peers"]["bob"].is_object();
        if (live || resynced) && seq >= joined.seq {
            break;
        }
    }
}
