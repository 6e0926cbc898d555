//! The client commands of the real `lanrage-control` binary against a real
//! server (in this process, port 0, a fresh SQLite file), each user with its
//! own HOME so identities and tokens are kept apart.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use lanrage_proto::{
    CreatePartyResponse, JoinPartyResponse, PartyResponse, RelayStatusResponse, RelaysResponse,
    SignalsResponse, StatusResponse,
};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const RELAY_KEY: &str = "change-me";

/// A server running on its own runtime in a background thread.
struct TestServer {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".into();
        config.database_url = Some(format!(
            "sqlite://{}",
            dir.path().join("control.db").display()
        ));
        config.rate_limit = Switch::Off;
        config.relay_key = Some(RELAY_KEY.parse::<Secret>().unwrap());
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let server = Server::start(config).await.unwrap();
                addr_tx.send(server.local_addr().unwrap()).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Self {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    /// A home folder for one user of the command line.
    fn home(&self, user: &str) -> PathBuf {
        let home = self.dir.path().join("homes").join(user);
        std::fs::create_dir_all(&home).unwrap();
        home
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn command(server: &str, home: &Path, peer: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lanrage-control"));
    command
        .args(args)
        .env("HOME", home)
        .env("LANRAGE_CONTROL_SERVER", server)
        .env("LANRAGE_PEER_ID", peer)
        .env_remove("LANRAGE_RELAY_KEY")
        .env_remove("LANRAGE_REGISTRATION_KEY")
        .env_remove("RUST_LOG");
    command
}

fn run(server: &TestServer, user: &str, args: &[&str]) -> Output {
    command(&server.url, &server.home(user), user, args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed and parses its one line of JSON.
fn json<T: DeserializeOwned>(server: &TestServer, user: &str, args: &[&str]) -> T {
    let output = run(server, user, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// A JSON file the command line wrote.
fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Creates the party "Friday LAN" as `user`; its id.
fn create_party(server: &TestServer, user: &str) -> String {
    let created: CreatePartyResponse =
        json(server, user, &["party", "create", "Friday LAN", "--json"]);
    created.party_id.to_string()
}

/// Starts `party watch` (with `args`) as `user`, its output piped and its
/// errors sent to `stderr`.
fn watch(server: &TestServer, user: &str, args: &[&str], stderr: Stdio) -> std::process::Child {
    let args: Vec<&str> = ["party", "watch"].iter().chain(args).copied().collect();
    command(&server.url, &server.home(user), user, &args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Runs a command that must fail; returns its exit code and its stderr.
fn failure(server: &TestServer, user: &str, args: &[&str]) -> (i32, String) {
    let output = run(server, user, args);
    assert!(!output.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap(), stderr)
}

#[test]
fn a_party_from_create_to_leave() {
    let server = TestServer::start();

    let created: CreatePartyResponse = json(
        &server,
        "alice",
        &["party", "create", "Friday LAN", "--name", "Alice", "--json"],
    );
    let party_id = created.party_id.to_string();
    let shown: PartyResponse = json(&server, "alice", &["party", "show", "--json"]);
    let joined: JoinPartyResponse = json(
        &server,
        "bob",
        &[
            "party",
            "join",
            &party_id,
            "--nat-type",
            "full_cone",
            "--public-ip",
            "203.0.113.9",
            "--public-port",
            "40000",
            "--local-ip",
            "192.168.1.21",
            "--json",
        ],
    );
    let human = run(&server, "bob", &["party", "show"]);
    let queued: StatusResponse = json(
        &server,
        "alice",
        &[
            "signal",
            "send",
            "bob",
            r#"{"type":"offer","endpoint":"198.51.100.4:51820"}"#,
            "--json",
        ],
    );
    let signals: SignalsResponse = json(&server, "bob", &["signal", "poll", "--json"]);
    let registered: RelayStatusResponse = json(
        &server,
        "alice",
        &[
            "relay",
            "register",
            "eu-1",
            "--public-ip",
            "198.51.100.10",
            "--port",
            "51820",
            "--region",
            "eu",
            "--relay-key",
            RELAY_KEY,
            "--json",
        ],
    );
    let relays: RelaysResponse = json(
        &server,
        "bob",
        &["relay", "list", "--region", "eu", "--json"],
    );
    let bob_left: StatusResponse = json(&server, "bob", &["party", "leave", "--json"]);
    let alice_left: StatusResponse = json(&server, "alice", &["party", "leave", "--json"]);
    let (code, stderr) = failure(&server, "alice", &["party", "show", &party_id]);

    // The generated identity's key is the one the server holds.
    assert_eq!(created.party.host_id.as_str(), "alice");
    assert_eq!(created.virtual_ip.to_string(), "10.66.0.1");
    assert_eq!(shown.party, created.party);
    let bob = &joined.party.peers[&joined
        .party
        .peers
        .keys()
        .find(|p| p.as_str() == "bob")
        .unwrap()
        .clone()];
    assert_eq!(bob.nat_type.as_str(), "full_cone");
    assert_eq!(bob.public_port, 40000);
    assert_eq!(bob.local_ip.to_string(), "192.168.1.21");
    assert_eq!(bob.name.as_str(), "bob");
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("Party \"Friday LAN\""), "{human}");
    assert!(human.contains("alice (host)"), "{human}");
    assert!(human.contains("203.0.113.9:40000"), "{human}");
    assert_eq!(queued.status, "queued");
    assert_eq!(signals.signals.len(), 1);
    assert_eq!(signals.signals[0].from_peer_id.as_str(), "alice");
    assert_eq!(registered.status, "registered");
    assert_eq!(relays.relays.len(), 1);
    assert_eq!(bob_left.status, "left");
    assert_eq!(alice_left.status, "party_deleted");
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("not found") && stderr.contains("404"),
        "{stderr}"
    );
}

#[test]
fn identity_and_token_are_kept_private_in_the_config_folder() {
    let server = TestServer::start();
    let _: RelaysResponse = json(&server, "alice", &["relay", "list", "--json"]);
    let _: RelaysResponse = json(&server, "alice", &["relay", "list", "--json"]);

    let dir = server.home("alice").join(".lanrage");
    let identity = read_json(&dir.join("identity.json"));
    let sessions = read_json(&dir.join("client.json"));

    assert_eq!(identity["version"], "1");
    assert!(lanrage_proto::PublicKey::parse(identity["public_key"].as_str().unwrap()).is_ok());
    assert_eq!(sessions["version"], "1");
    assert_eq!(sessions["sessions"][0]["peer_id"], "alice");
    assert!(sessions["sessions"][0]["token"]["token"].is_string());
    #[cfg(unix)]
    for file in ["identity.json", "client.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn watch_prints_another_peer_joining_and_stops_on_ctrl_c() {
    let server = TestServer::start();
    let party_id = create_party(&server, "alice");
    let mut watcher = watch(&server, "alice", &["--json"], Stdio::null());
    let stdout = watcher.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("watch printed nothing")
    };

    let first = next();
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party_id, "--json"]);
    let joined = loop {
        let line = next();
        if line["type"] == "peer_joined" {
            break line;
        }
    };
    let status = Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = watcher.wait().unwrap();

    assert_eq!(first["type"], "party_update");
    assert_eq!(first["party"]["party_id"], party_id.as_str());
    assert_eq!(joined["peer"]["peer_id"], "bob");
    assert_eq!(joined["seq"], 2);
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn failures_are_one_line_with_a_non_zero_exit() {
    let server = TestServer::start();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };

    let (unreachable_code, unreachable) = {
        let output = command(&dead, &server.home("alice"), "alice", &["relay", "list"])
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (wrong_key_code, wrong_key) = failure(
        &server,
        "alice",
        &[
            "relay",
            "register",
            "r1",
            "--public-ip",
            "198.51.100.1",
            "--port",
            "3478",
            "--relay-key",
            "guess",
        ],
    );
    let (no_party_code, no_party) = failure(&server, "carol", &["party", "show"]);
    let (bad_id_code, _) = failure(&server, "alice", &["party", "join", "not/an/id"]);

    assert_eq!(unreachable_code, 1);
    assert_eq!(unreachable.lines().count(), 1, "{unreachable}");
    assert!(
        unreachable.contains("cannot reach the control server"),
        "{unreachable}"
    );
    assert_eq!(wrong_key_code, 1);
    assert!(wrong_key.contains("invalid relay key (403"), "{wrong_key}");
    assert_eq!(no_party_code, 1);
    assert!(no_party.contains("pass a PARTY_ID"), "{no_party}");
    assert_eq!(bad_id_code, 2);
}

#[test]
fn the_generated_public_key_is_the_private_keys() {
    let server = TestServer::start();
    let _: RelaysResponse = json(&server, "alice", &["relay", "list", "--json"]);

    let dir = server.home("alice").join(".lanrage");
    let identity = read_json(&dir.join("identity.json"));
    use base64::Engine as _;
    let private = base64::engine::general_purpose::STANDARD
        .decode(identity["private_key"].as_str().unwrap())
        .unwrap();
    let private: [u8; 32] = private.try_into().unwrap();
    let derived = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));

    assert_eq!(
        identity["public_key"].as_str().unwrap(),
        base64::engine::general_purpose::STANDARD.encode(derived.as_bytes())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn watch_into_a_closed_pipe_ends_quietly() {
    let server = TestServer::start();
    let party_id = create_party(&server, "alice");
    // `party watch | head -c 10`: the reader takes a little, then goes away.
    let mut watcher = watch(&server, "alice", &[], Stdio::piped());
    let mut stdout = watcher.stdout.take().unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);

    // The next line printed meets the closed pipe.
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party_id, "--json"]);
    let exit = wait_with_timeout(&mut watcher, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watcher.stderr.take().unwrap(), &mut stderr).unwrap();

    assert_eq!(exit.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// Waits for `child`, killing it (and failing) if it outlives `limit`.
fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn commands_run_at_once_keep_each_others_sessions() {
    let server = TestServer::start();
    let home = server.home("shared");
    let peers: Vec<String> = (0..8).map(|i| format!("peer-{i}")).collect();

    let children: Vec<_> = peers
        .iter()
        .map(|peer| {
            command(&server.url, &home, peer, &["relay", "list", "--json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let sessions = read_json(&home.join(".lanrage").join("client.json"));
    let mut saved: Vec<&str> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["peer_id"].as_str().unwrap())
        .collect();
    saved.sort_unstable();
    assert_eq!(saved, peers);
}

#[test]
fn a_corrupt_session_file_is_moved_aside_with_a_warning() {
    let server = TestServer::start();
    let home = server.home("alice");
    let dir = home.join(".lanrage");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("client.json"), "{\"version\": \"1\", \"sess").unwrap();

    let output = run(&server, "alice", &["relay", "list", "--json"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("client.json"),
        "{stderr}"
    );
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("client.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join(&aside[0])).unwrap(),
        "{\"version\": \"1\", \"sess"
    );
    let sessions = read_json(&dir.join("client.json"));
    assert_eq!(sessions["sessions"][0]["peer_id"], "alice");
}

#[test]
fn client_options_may_come_before_the_command_group() {
    let server = TestServer::start();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let home = server.home("dana");

    // The environment points at a dead server; the leading flag wins.
    let output = command(
        &dead,
        &home,
        "someone-else",
        &[
            "--server",
            &server.url,
            "--peer-id",
            "dana",
            "--json",
            "relay",
            "list",
        ],
    )
    .output()
    .unwrap();
    let serve = command(&server.url, &home, "dana", &["--json", "serve"])
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let relays: RelaysResponse = serde_json::from_slice(&output.stdout).unwrap();
    assert!(relays.relays.is_empty());
    let sessions = read_json(&home.join(".lanrage").join("client.json"));
    assert_eq!(sessions["sessions"][0]["peer_id"], "dana");
    assert_eq!(sessions["sessions"][0]["server"], server.url.as_str());
    assert_eq!(serve.status.code(), Some(2));
}

/// A command as `user` with no `--peer-id`: the key-bound default.
fn keyed(server: &TestServer, user: &str, args: &[&str]) -> Output {
    command(&server.url, &server.home(user), user, args)
        .env_remove("LANRAGE_PEER_ID")
        .output()
        .unwrap()
}

/// [`keyed`], which must succeed; its one line of JSON.
fn keyed_json(server: &TestServer, user: &str, args: &[&str]) -> Value {
    let output = keyed(server, user, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// The status of `GET /relays` with `token`.
fn status_with_token(server: &TestServer, token: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The client library builds reqwest without a rustls provider; this
    // test's own client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/relays", server.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn by_default_the_command_line_proves_its_key_and_is_the_derived_peer() {
    let server = TestServer::start();

    let created = keyed_json(
        &server,
        "erin",
        &["party", "create", "Friday LAN", "--json"],
    );

    let dir = server.home("erin").join(".lanrage");
    let identity = read_json(&dir.join("identity.json"));
    let key = lanrage_client::PrivateKey::parse(identity["private_key"].as_str().unwrap()).unwrap();
    let derived = key.derived_peer_id();
    assert!(derived.as_str().starts_with("lr1"), "{derived}");
    assert_eq!(created["party"]["host_id"], derived.as_str());
    assert_eq!(
        created["party"]["peers"][derived.as_str()]["public_key"],
        identity["public_key"]
    );
    let sessions = read_json(&dir.join("client.json"));
    assert_eq!(sessions["sessions"][0]["peer_id"], derived.as_str());
    assert_eq!(sessions["sessions"][0]["key"], identity["public_key"]);
}

#[test]
fn auth_rotate_keeps_the_peer_and_auth_logout_revokes_the_token() {
    let server = TestServer::start();
    let created = keyed_json(
        &server,
        "erin",
        &["party", "create", "Friday LAN", "--json"],
    );
    let me = created["party"]["host_id"].as_str().unwrap().to_owned();
    let dir = server.home("erin").join(".lanrage");
    let old_key = read_json(&dir.join("identity.json"))["public_key"].clone();
    let old_token = read_json(&dir.join("client.json"))["sessions"][0]["token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let rotated = keyed_json(&server, "erin", &["auth", "rotate", "--json"]);

    let identity = read_json(&dir.join("identity.json"));
    assert_eq!(rotated["peer_id"], me.as_str());
    assert_ne!(identity["public_key"], old_key);
    assert_eq!(rotated["public_key"], identity["public_key"]);
    assert!(!dir.join("identity.rotating").exists());
    assert_eq!(status_with_token(&server, &old_token), 401);
    // The next command proves the new key and is still the host.
    let shown = keyed_json(&server, "erin", &["party", "show", "--json"]);
    assert_eq!(shown["party"]["host_id"], me.as_str());
    assert_eq!(
        shown["party"]["peers"][me.as_str()]["public_key"],
        identity["public_key"]
    );

    let token = read_json(&dir.join("client.json"))["sessions"][0]["token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let logged_out = keyed_json(&server, "erin", &["auth", "logout", "--json"]);

    assert_eq!(logged_out["status"], "revoked");
    assert_eq!(status_with_token(&server, &token), 401);
    let sessions = read_json(&dir.join("client.json"));
    assert!(sessions["sessions"][0]["token"].is_null(), "{sessions}");
    // A later command obtains a new token by proving the key again.
    let shown = keyed_json(&server, "erin", &["party", "show", "--json"]);
    assert_eq!(shown["party"]["host_id"], me.as_str());
}

#[test]
fn auth_rotate_is_for_key_bound_peers_only() {
    let server = TestServer::start();
    let (code, stderr) = failure(&server, "alice", &["auth", "rotate"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("without --peer-id"), "{stderr}");
    let logged_out: Value = json(&server, "alice", &["auth", "logout", "--json"]);
    assert_eq!(logged_out["status"], "no_token");
}
