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

use lanrage_client::{HttpClient, HttpConfig};
use lanrage_proto::{
    AdminParty, AdminRelay, AdminStats, CreatePartyResponse, InviteResponse, InvitesResponse,
    JoinPartyResponse, KickResponse, PartyId, PartyRelayResponse, PartyResponse, PathBasis,
    PathPlanKind, PathsResponse, PeerId, RelayId, RelayStatusResponse, RelayStatusesResponse,
    RelaysResponse, RevokePeerResponse, ServerMessage, SettingsResponse, SignalsResponse,
    StatusResponse, TransferHostResponse,
};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const RELAY_KEY: &str = "change-me";
const ADMIN_KEY: &str = "operator-secret";

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
        config.admin_key = Some(ADMIN_KEY.parse::<Secret>().unwrap());
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
        .env_remove("LANRAGE_ADMIN_KEY")
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

/// The text output of a command as `user`, which must succeed.
fn text(server: &TestServer, user: &str, args: &[&str]) -> String {
    let output = run(server, user, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_host_changes_settings_hands_over_and_removes_members() {
    let server = TestServer::start();
    let created: CreatePartyResponse = json(
        &server,
        "alice",
        &[
            "party",
            "create",
            "Friday LAN",
            "--host-policy",
            "migrate",
            "--max-members",
            "4",
            "--json",
        ],
    );
    let party_id = created.party_id.to_string();
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party_id, "--json"]);
    let _: JoinPartyResponse = json(&server, "carol", &["party", "join", &party_id, "--json"]);

    let read: SettingsResponse = json(&server, "bob", &["party", "settings", "--json"]);
    let shown = text(&server, "bob", &["party", "settings"]);
    let (member_code, member_set) = failure(
        &server,
        "bob",
        &["party", "settings", "set", "--host-policy", "end"],
    );
    let changed: SettingsResponse = json(
        &server,
        "alice",
        &[
            "party",
            "settings",
            "set",
            "--join-policy",
            "invite",
            "--max-members",
            "none",
            "--party",
            &party_id,
            "--json",
        ],
    );
    let handed: TransferHostResponse = json(
        &server,
        "alice",
        &[
            "party",
            "host",
            "transfer",
            "bob",
            "--expected-epoch",
            "1",
            "--json",
        ],
    );
    let (former_code, former) = failure(&server, "alice", &["party", "host", "transfer", "carol"]);
    let (stale_code, stale) = failure(
        &server,
        "bob",
        &[
            "party",
            "host",
            "transfer",
            "carol",
            "--expected-epoch",
            "1",
        ],
    );
    let shown_party = text(&server, "carol", &["party", "show"]);
    let banned: KickResponse = json(
        &server,
        "bob",
        &["party", "kick", "carol", "--ban", "--json"],
    );
    let (rejoin_code, rejoin) = failure(&server, "carol", &["party", "join", &party_id]);
    let kicked = text(&server, "bob", &["party", "kick", "alice"]);
    let (itself_code, itself) = failure(&server, "bob", &["party", "kick", "bob"]);
    let after: PartyResponse = json(&server, "bob", &["party", "show", "--json"]);

    let settings = created.extras.settings.unwrap();
    assert_eq!(settings.host_policy.as_str(), "migrate");
    assert_eq!(settings.max_members, Some(4));
    assert_eq!(read.settings, settings);
    assert!(shown.contains("host_policy  migrate"), "{shown}");
    assert!(shown.contains("max_members  4"), "{shown}");
    assert_eq!(member_code, 1);
    assert!(member_set.contains("(403)"), "{member_set}");
    assert_eq!(changed.settings.join_policy.as_str(), "invite");
    assert_eq!(changed.settings.max_members, None);
    assert_eq!(changed.settings.host_policy.as_str(), "migrate");
    assert_eq!(handed.party.host_id.as_str(), "bob");
    assert_eq!(handed.host_epoch, 2);
    assert_eq!(former_code, 1);
    assert!(former.contains("(403)"), "{former}");
    assert_eq!(stale_code, 1);
    assert!(stale.contains("(409)"), "{stale}");
    assert!(shown_party.contains("bob (host)"), "{shown_party}");
    assert!(shown_party.contains("Host epoch 2"), "{shown_party}");
    assert!(
        shown_party.contains("Settings: host_policy migrate, join_policy invite, max_members none"),
        "{shown_party}"
    );
    assert_eq!((banned.status.as_str(), banned.banned), ("removed", true));
    assert_eq!(rejoin_code, 1);
    assert!(rejoin.contains("(403)"), "{rejoin}");
    assert!(kicked.contains("Removed alice"), "{kicked}");
    assert_eq!(itself_code, 1);
    assert!(itself.contains("(422)"), "{itself}");
    assert_eq!(after.party.peers.len(), 1);
    assert_eq!(after.extras.host_epoch, Some(2));
}

#[test]
fn host_flags_are_checked_before_anything_is_sent() {
    let server = TestServer::start();
    for args in [
        &["party", "settings", "set"][..],
        &["party", "settings", "set", "--max-members", "1"],
        &["party", "settings", "set", "--max-members", "257"],
        &["party", "settings", "set", "--join-policy", "closed"],
        &["party", "create", "x", "--host-policy", "Migrate"],
        &["party", "host", "transfer"],
        &["party", "kick", "not/a/peer"],
    ] {
        let (code, stderr) = failure(&server, "alice", args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

/// The lines `child` prints, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line from [`lines_of`], which must come soon.
fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("watch printed nothing more")
}

/// Alice's party with Bob in it, watched by Bob with `--json` and by
/// Alice as text, both past the party they print first (they follow it
/// from then on).
struct Watching {
    party_id: String,
    children: [std::process::Child; 2],
    json_lines: mpsc::Receiver<String>,
    text_lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(server: &TestServer) -> Self {
        let party_id = create_party(server, "alice");
        let _: JoinPartyResponse = json(server, "bob", &["party", "join", &party_id, "--json"]);
        let mut children = [
            watch(server, "bob", &["--json"], Stdio::null()),
            watch(server, "alice", &[], Stdio::null()),
        ];
        let json_lines = lines_of(&mut children[0]);
        let text_lines = lines_of(&mut children[1]);
        next_line(&json_lines);
        next_line(&text_lines);
        Self {
            party_id,
            children,
            json_lines,
            text_lines,
        }
    }

    /// The next `n` lines of each: Bob's as JSON messages, Alice's text.
    fn next<T: DeserializeOwned>(&self, n: usize) -> (Vec<T>, Vec<String>) {
        let printed = (0..n)
            .map(|_| serde_json::from_str(&next_line(&self.json_lines)).unwrap())
            .collect();
        let written = (0..n).map(|_| next_line(&self.text_lines)).collect();
        (printed, written)
    }

    /// Stops both with Ctrl-C and waits for them.
    fn stop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            wait_with_timeout(child, Duration::from_secs(30));
        }
    }
}

#[test]
fn watch_prints_settings_and_host_changes() {
    let server = TestServer::start();
    let mut watching = Watching::start(&server);

    let _: SettingsResponse = json(
        &server,
        "alice",
        &[
            "party",
            "settings",
            "set",
            "--host-policy",
            "migrate",
            "--json",
        ],
    );
    let _: TransferHostResponse = json(
        &server,
        "alice",
        &["party", "host", "transfer", "bob", "--json"],
    );
    let (printed, written) = watching.next::<Value>(3);
    watching.stop();

    let types: Vec<&str> = printed
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["party_settings", "host_changed", "party_update"]);
    assert_eq!(printed[0]["settings"]["host_policy"], "migrate");
    assert_eq!(printed[1]["old_host_id"], "alice");
    assert_eq!(printed[1]["new_host_id"], "bob");
    assert_eq!(printed[1]["reason"], "transferred");
    assert_eq!(printed[1]["host_epoch"], 2);
    assert_eq!(printed[2]["party"]["host_id"], "bob");
    assert!(
        written[0].ends_with("] settings: host_policy migrate, join_policy open, max_members none"),
        "{}",
        written[0]
    );
    assert!(
        written[1].ends_with("] host is now bob (alice handed it over)"),
        "{}",
        written[1]
    );
    assert!(written[2].contains("hosted by bob"), "{}", written[2]);
}

/// The code `party invite` printed: alone on its line, after a blank one.
fn printed_code(output: &str) -> &str {
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines.len() >= 4, "{output}");
    assert_eq!((lines[0], lines[2]), ("", ""), "{output}");
    lines[1]
}

#[test]
fn the_host_hands_out_codes_and_others_join_by_them() {
    let server = TestServer::start();
    let created: CreatePartyResponse = json(
        &server,
        "alice",
        &[
            "party",
            "create",
            "Friday LAN",
            "--join-policy",
            "invite",
            "--json",
        ],
    );
    let party_id = created.party_id.to_string();

    let shown = text(
        &server,
        "alice",
        &["party", "invite", "--uses", "2", "--ttl", "30m"],
    );
    let made: InviteResponse = json(
        &server,
        "alice",
        &["party", "invite", "--ttl", "2h", "--json"],
    );
    let code = printed_code(&shown).to_owned();
    let (by_id_code, by_id) = failure(&server, "bob", &["party", "join", &party_id]);
    // Typed the way a person would after hearing it.
    let typed = code.to_ascii_lowercase().replace('-', " ");
    let joined: JoinPartyResponse = json(&server, "bob", &["party", "join", &typed, "--json"]);
    let remembered: PartyResponse = json(&server, "bob", &["party", "show", "--json"]);
    let joined_text = text(&server, "carol", &["party", "join", &made.invite.code]);
    let listed: InvitesResponse = json(&server, "alice", &["party", "invites", "--json"]);
    let table = text(&server, "alice", &["party", "invites"]);
    let (member_code, member) = failure(&server, "bob", &["party", "invite"]);
    let nameplate = code.rsplit_once('-').unwrap().0.to_owned();
    let revoked: StatusResponse = json(
        &server,
        "alice",
        &["party", "invite", "revoke", &nameplate, "--json"],
    );
    let revoked_text = text(
        &server,
        "alice",
        &[
            "party",
            "invite",
            "revoke",
            &made.invite.nameplate,
            "--party",
            &party_id,
        ],
    );
    let (gone_code, gone) = failure(&server, "dave", &["party", "join", &code]);
    let (again_code, again) = failure(&server, "alice", &["party", "invite", "revoke", &nameplate]);
    let none_left = text(&server, "alice", &["party", "invites"]);

    let expected_code = lanrage_rules::InviteCode::parse(&code).unwrap().reveal();
    assert_eq!(code, expected_code, "the code, plain, alone on its line");
    let details = shown.lines().nth(3).unwrap();
    assert!(details.starts_with("Works until "), "{shown}");
    assert!(details.contains("(in 30 minutes)"), "{shown}");
    assert!(details.contains("for up to 2 joins"), "{shown}");
    assert!(shown.contains(&format!("party join {code}")), "{shown}");
    assert_eq!(made.invite.party_id.as_str(), party_id);
    assert_eq!((made.invite.max_uses, made.invite.uses), (10, 0));
    assert_eq!(
        made.invite.expires_at.as_micros() - made.invite.created_at.as_micros(),
        7_200_000_000
    );
    assert_eq!(by_id_code, 1);
    assert!(
        by_id.contains("join code") && by_id.contains("(403)"),
        "{by_id}"
    );
    assert_eq!(joined.party.party_id.as_str(), party_id);
    assert_eq!(remembered.party.party_id.as_str(), party_id);
    assert!(
        joined_text.contains("Joined party \"Friday LAN\"") && joined_text.contains("by code"),
        "{joined_text}"
    );
    let uses: Vec<(u32, u32)> = listed
        .invites
        .iter()
        .map(|i| (i.uses, i.max_uses))
        .collect();
    assert_eq!(uses, [(1, 2), (1, 10)]);
    assert!(table.contains(&code) && table.contains("1/2"), "{table}");
    assert!(
        table.contains(&made.invite.code) && table.contains("1/10"),
        "{table}"
    );
    assert!(table.contains("in 30 minutes"), "{table}");
    assert_eq!(member_code, 1);
    assert!(member.contains("(403)"), "{member}");
    assert_eq!(revoked.status, "revoked");
    assert!(revoked_text.contains("Revoked join code"), "{revoked_text}");
    assert_eq!(gone_code, 1);
    assert!(
        gone.contains("invite code not found or no longer valid (404)"),
        "{gone}"
    );
    assert_eq!(again_code, 1);
    assert!(again.contains("(404)"), "{again}");
    assert!(none_left.contains("no live join codes"), "{none_left}");
}

/// Asserts that each command is a usage error (exit 2) whose message
/// says `says`, with nothing sent: no server listens where it would go.
fn assert_usage_errors(cases: &[(&[&str], &str)]) {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let home = tempfile::tempdir().unwrap();
    for (args, says) in cases {
        let output = command(&dead, home.path(), "alice", args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn invite_flags_and_codes_are_checked_before_anything_is_sent() {
    assert_usage_errors(&[
        (&["party", "invite", "--ttl", "59s"][..], "from 60 seconds"),
        (&["party", "invite", "--ttl", "8d"], "to 7 days"),
        (&["party", "invite", "--ttl", "30x"], "like 90s"),
        (&["party", "invite", "--uses", "0"], "1 to 100"),
        (&["party", "invite", "--uses", "101"], "1 to 100"),
        (
            &["party", "invite", "revoke", "not/a/name"],
            "not a nameplate",
        ),
        (
            &["party", "invite", "--uses", "2", "revoke", "frog"],
            "--uses",
        ),
        (&["party", "join", "FROG-74"], "4 to 8"),
        (&["party", "join", "FR\u{41E}G-7421"], "U+041E"),
        (
            &["party", "join", "0123456789ABCDEF0123456789ABCDEF"],
            "32 lowercase hex",
        ),
    ]);
}

#[test]
fn watch_prints_revoked_codes() {
    let server = TestServer::start();
    let mut watching = Watching::start(&server);

    let by_host: InviteResponse = json(&server, "alice", &["party", "invite", "--json"]);
    let guessed: InviteResponse = json(&server, "alice", &["party", "invite", "--json"]);
    let _: StatusResponse = json(
        &server,
        "alice",
        &[
            "party",
            "invite",
            "revoke",
            &by_host.invite.nameplate,
            "--json",
        ],
    );
    // The server's default budget: three wrong secrets end the code.
    let (word, digits) = guessed.invite.code.rsplit_once('-').unwrap();
    for wrong in ["0000", "1111", "2222", "3333"]
        .iter()
        .filter(|wrong| **wrong != digits)
        .take(3)
    {
        let (code, _) = failure(
            &server,
            "mallory",
            &["party", "join", &format!("{word}-{wrong}")],
        );
        assert_eq!(code, 1);
    }
    let (printed, written) = watching.next::<ServerMessage>(2);
    watching.stop();

    let revoked: Vec<(&str, &str)> = printed
        .iter()
        .map(|message| match message {
            ServerMessage::InviteRevoked {
                party_id,
                nameplate,
                reason,
                ..
            } if party_id.as_str() == watching.party_id => (nameplate.as_str(), reason.as_str()),
            other => panic!("expected invite_revoked of the party, got {other:?}"),
        })
        .collect();
    assert_eq!(
        revoked,
        [
            (by_host.invite.nameplate.as_str(), "host"),
            (guessed.invite.nameplate.as_str(), "guessing")
        ]
    );
    let shown = |invite: &InviteResponse| invite.invite.nameplate.to_ascii_uppercase();
    assert!(
        written[0].ends_with(&format!(
            "] join code {}-… was revoked by the host",
            shown(&by_host)
        )),
        "{}",
        written[0]
    );
    assert!(
        written[1].ends_with(&format!(
            "] join code {}-… was revoked: too many wrong guesses of its digits",
            shown(&guessed)
        )),
        "{}",
        written[1]
    );
}

/// `peer` reports its round trips to relays through the client library:
/// an application measures them, the command line has no command for it.
fn report_rtts(server: &TestServer, peer: &str, party_id: &str, rtts: &[(&str, f64)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = HttpClient::new(HttpConfig::new(
            server.url.clone(),
            PeerId::parse(peer).unwrap(),
        ))
        .unwrap();
        let rtts = rtts
            .iter()
            .map(|(relay, ms)| (RelayId::parse(*relay).unwrap(), Some(*ms)))
            .collect();
        client
            .report_relay_rtts(&PartyId::parse(party_id).unwrap(), rtts)
            .await
            .unwrap();
    });
}

/// Registers relays through the command line, as `operator`.
fn register_relays(server: &TestServer, relays: &[&str]) {
    for relay in relays {
        let _: RelayStatusResponse = json(
            server,
            "operator",
            &[
                "relay",
                "register",
                relay,
                "--public-ip",
                "198.51.100.1",
                "--port",
                "3478",
                "--relay-key",
                RELAY_KEY,
                "--json",
            ],
        );
    }
}

/// Asserts that a line of `output` has these words, whatever the spacing.
fn assert_row(output: &str, words: &[&str]) {
    assert!(
        output
            .lines()
            .any(|line| line.split_whitespace().eq(words.iter().copied())),
        "{words:?} in {output}"
    );
}

#[test]
fn party_paths_relay_and_nat_show_the_plan_and_the_recommendation() {
    let server = TestServer::start();
    register_relays(&server, &["x", "y"]);
    let behind_nat =
        |public_ip: &'static str| ["--nat-type", "symmetric", "--public-ip", public_ip];
    let created: CreatePartyResponse = json(
        &server,
        "alice",
        &[
            &["party", "create", "Friday LAN", "--json"][..],
            &behind_nat("203.0.113.1"),
        ]
        .concat(),
    );
    let party_id = created.party_id.to_string();
    let _: JoinPartyResponse = json(
        &server,
        "bob",
        &[
            &["party", "join", &party_id, "--json"][..],
            &behind_nat("198.51.100.2"),
        ]
        .concat(),
    );

    let unmeasured = text(&server, "bob", &["party", "relay"]);
    let table: PathsResponse = json(&server, "alice", &["party", "paths", "--json"]);
    let table_text = text(&server, "alice", &["party", "paths"]);
    let port_mapped = [
        "party",
        "nat",
        "--mapping",
        "address_and_port_dependent",
        "--filtering",
        "address_and_port_dependent",
        "--port-mapping",
    ];
    let reported: StatusResponse = json(&server, "bob", &[&port_mapped[..], &["--json"]].concat());
    let reported_text = text(&server, "bob", &port_mapped);
    let mapped_text = text(&server, "alice", &["party", "paths"]);
    // x is 10 and 90 ms away, y 40 from both: y's pair costs 80, x's 100.
    report_rtts(&server, "alice", &party_id, &[("x", 10.0), ("y", 40.0)]);
    report_rtts(&server, "bob", &party_id, &[("x", 90.0), ("y", 40.0)]);
    let choice: PartyRelayResponse = json(&server, "bob", &["party", "relay", "--json"]);
    let choice_text = text(&server, "alice", &["party", "relay", "--party", &party_id]);
    let statuses_text = text(&server, "alice", &["relay", "status"]);
    let drained: StatusResponse = json(
        &server,
        "operator",
        &[
            "relay",
            "report",
            "y",
            "--draining",
            "true",
            "--sessions",
            "2",
            "--relay-key",
            RELAY_KEY,
            "--json",
        ],
    );
    let statuses: RelayStatusesResponse = json(&server, "alice", &["relay", "status", "--json"]);
    let moved: PartyRelayResponse = json(&server, "bob", &["party", "relay", "--json"]);
    let (outsider_code, outsider) =
        failure(&server, "eve", &["party", "paths", "--party", &party_id]);
    let (wrong_key_code, wrong_key) = failure(
        &server,
        "operator",
        &[
            "relay",
            "report",
            "x",
            "--load",
            "0.5",
            "--relay-key",
            "not-the-key",
        ],
    );

    assert!(
        unmeasured.contains("no relay recommended (no measurements)"),
        "{unmeasured}"
    );
    assert!(
        unmeasured.contains("Unmeasured: alice, bob"),
        "{unmeasured}"
    );
    assert_eq!(table.party_id.as_str(), party_id);
    let pair = &table.pairs[..];
    assert_eq!(pair.len(), 1, "{table:?}");
    assert_eq!(
        (pair[0].plan, pair[0].confidence, pair[0].basis),
        (PathPlanKind::Relay, 0.85, PathBasis::NatTable)
    );
    assert!(
        table_text.starts_with(&format!("Paths of party {party_id}:")),
        "{table_text}"
    );
    assert_row(
        &table_text,
        &[
            "A",
            "B",
            "PLAN",
            "CONFIDENCE",
            "BASIS",
            "RTT",
            "LAST",
            "OBSERVED",
        ],
    );
    assert_row(
        &table_text,
        &["alice", "bob", "relay", "0.85", "nat_table", "-", "-"],
    );
    assert_eq!(reported.status, "ok");
    assert!(
        reported_text.contains(
            "mapping address_and_port_dependent, filtering address_and_port_dependent, port mapping yes"
        ),
        "{reported_text}"
    );
    // A port opened by UPnP counts as no NAT: reachable from anywhere.
    assert_row(
        &mapped_text,
        &["alice", "bob", "direct", "0.95", "nat_table", "-", "-"],
    );
    assert_eq!(
        choice.relay.as_ref().map(|r| r.relay_id.as_str()),
        Some("y")
    );
    assert_eq!(choice.worst_pair_rtt_ms, Some(80));
    assert_eq!(choice.reason, "better");
    assert_eq!(choice.alternates, [RelayId::parse("x").unwrap()]);
    for line in [
        "relay y at 198.51.100.1:3478, region unknown (better)",
        "Worst pair through it: 80 ms",
        "Round trips to it: alice 40 ms, bob 40 ms",
        "Unmeasured: none",
        "Alternates: x",
    ] {
        assert!(choice_text.contains(line), "{line:?} in {choice_text}");
    }
    assert_row(&statuses_text, &["x", "unknown", "active", "-", "-", "-"]);
    assert_eq!(drained.status, "ok");
    let states: Vec<(&str, &str, Option<u32>)> = statuses
        .relays
        .iter()
        .map(|r| (r.relay_id.as_str(), r.state.as_str(), r.sessions))
        .collect();
    assert_eq!(states, [("x", "active", None), ("y", "draining", Some(2))]);
    assert_eq!(
        (
            moved.relay.as_ref().map(|r| r.relay_id.as_str()),
            moved.reason.as_str()
        ),
        (Some("x"), "current draining")
    );
    assert_eq!(outsider_code, 1);
    assert!(outsider.contains("(403)"), "{outsider}");
    assert_eq!(wrong_key_code, 1);
    assert!(wrong_key.contains("(403)"), "{wrong_key}");
}

#[test]
fn nat_and_relay_flags_are_checked_before_anything_is_sent() {
    assert_usage_errors(&[
        (
            &["party", "nat", "--mapping", "cone", "--filtering", "none"][..],
            "endpoint_independent",
        ),
        (&["party", "nat", "--mapping", "none"], "--filtering"),
        (
            &["relay", "report", "x", "--load", "1.5", "--relay-key", "k"],
            "from 0 to 1",
        ),
        (&["relay", "report", "x", "--relay-key", "k"], "--sessions"),
    ]);
}

#[test]
fn watch_prints_relay_recommendations_and_path_plans() {
    let server = TestServer::start();
    let mut watching = Watching::start(&server);
    register_relays(&server, &["x"]);

    report_rtts(&server, "alice", &watching.party_id, &[("x", 10.0)]);
    let (relay_printed, relay_written) = watching.next::<ServerMessage>(1);
    // Both unknown NATs: attempt (read, so the party has a plan to
    // change); an open one makes the pair direct.
    let _: PathsResponse = json(&server, "alice", &["party", "paths", "--json"]);
    let _: StatusResponse = json(
        &server,
        "bob",
        &[
            "party",
            "nat",
            "--mapping",
            "none",
            "--filtering",
            "none",
            "--json",
        ],
    );
    let (plan_printed, plan_written) = watching.next::<ServerMessage>(1);
    watching.stop();

    match &relay_printed[0] {
        ServerMessage::RelayRecommendation {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            ..
        } => {
            assert_eq!(party_id.as_str(), watching.party_id);
            assert_eq!(relay_id.as_ref().map(RelayId::as_str), Some("x"));
            assert_eq!(*worst_pair_rtt_ms, Some(10));
            assert_eq!(reason, "initial");
        }
        other => panic!("expected relay_recommendation, got {other:?}"),
    }
    assert!(
        relay_written[0].ends_with("] relay: x recommended (worst pair 10 ms; initial)"),
        "{}",
        relay_written[0]
    );
    match &plan_printed[0] {
        ServerMessage::PathPlan { pairs, .. } => {
            assert_eq!(pairs.len(), 1, "{pairs:?}");
            assert_eq!((pairs[0].a.as_str(), pairs[0].b.as_str()), ("alice", "bob"));
            assert_eq!(
                (pairs[0].plan, pairs[0].basis),
                (PathPlanKind::Direct, PathBasis::NatTable)
            );
        }
        other => panic!("expected path_plan, got {other:?}"),
    }
    assert!(
        plan_written[0].ends_with("] path plan: alice ↔ bob direct (nat_table, 0.95)"),
        "{}",
        plan_written[0]
    );
}

/// `admin …` with the admin key.
fn admin_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin-key", ADMIN_KEY]);
    all
}

#[test]
fn the_operator_lists_shows_and_ends_parties_and_manages_relays_and_peers() {
    let server = TestServer::start();
    let party = create_party(&server, "alice");
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party, "--json"]);
    register_relays(&server, &["r1"]);

    let listed = text(&server, "operator", &admin_args(&["parties"]));
    let row = listed.lines().find(|l| l.contains(&party)).unwrap();
    assert!(
        row.contains("Friday LAN") && row.contains("alice"),
        "{listed}"
    );
    assert_eq!(row.split_whitespace().nth(4), Some("2"), "{row}");
    assert!(listed.contains("1 party"), "{listed}");
    let as_json: AdminParty = json(&server, "operator", &admin_args(&["parties", "--json"]));
    assert_eq!(as_json.party_id.as_str(), party);

    let shown = text(&server, "operator", &admin_args(&["party", &party]));
    assert!(shown.contains("alice (host)"), "{shown}");
    assert_row(
        shown.lines().find(|l| l.contains("bob")).unwrap(),
        &["bob", "bob", "10.66.0.2", "unknown", "0s", "ago"],
    );

    let removed: Value = json(
        &server,
        "operator",
        &admin_args(&["remove", &party, "bob", "--json"]),
    );
    assert_eq!(removed["status"], "removed");
    let shown: AdminParty = json(
        &server,
        "operator",
        &admin_args(&["party", &party, "--json"]),
    );
    assert_eq!(shown.members.len(), 1);

    let relays: AdminRelay = json(&server, "operator", &admin_args(&["relays", "--json"]));
    assert_eq!(
        (relays.relay.relay_id.as_str(), relays.state.as_str()),
        ("r1", "active")
    );
    let relays = text(&server, "operator", &admin_args(&["relays"]));
    assert!(
        relays
            .lines()
            .any(|l| l.contains("r1") && l.contains("active")),
        "{relays}"
    );
    let gone = text(&server, "operator", &admin_args(&["deregister", "r1"]));
    assert!(gone.contains("Deregistered relay r1"), "{gone}");
    assert!(text(&server, "operator", &admin_args(&["relays"])).contains("No relays"));

    let stats: AdminStats = json(&server, "operator", &admin_args(&["stats", "--json"]));
    assert_eq!((stats.parties, stats.peers), (1, 1));
    assert_eq!(stats.database, "ok");
    let stats = text(&server, "operator", &admin_args(&["stats"]));
    assert!(stats.contains("1 parties, 1 members"), "{stats}");

    let revoked: RevokePeerResponse = json(
        &server,
        "operator",
        &admin_args(&["revoke", "bob", "--ban", "--json"]),
    );
    assert!(revoked.banned);
    let (_, banned) = failure(&server, "bob", &["party", "join", &party]);
    assert!(banned.contains("banned"), "{banned}");
    let unbanned = text(&server, "operator", &admin_args(&["unban", "bob"]));
    assert!(unbanned.contains("bob may register again"), "{unbanned}");

    let ended = text(&server, "operator", &admin_args(&["end", &party]));
    assert!(ended.contains("Ended party"), "{ended}");
    assert!(text(&server, "operator", &admin_args(&["parties"])).contains("No parties."));
}

#[test]
fn admin_commands_need_the_right_key() {
    let server = TestServer::start();
    let (code, missing) = failure(&server, "operator", &["admin", "parties"]);
    assert_eq!(code, 1);
    assert!(missing.contains("LANRAGE_ADMIN_KEY"), "{missing}");
    let (_, wrong) = failure(
        &server,
        "operator",
        &["admin", "parties", "--admin-key", "guess"],
    );
    assert!(wrong.contains("invalid admin key"), "{wrong}");
    assert_eq!(wrong.lines().count(), 1, "{wrong}");
}

/// The party `user` remembers for the test server, as `client.json` holds it.
fn remembered_party(server: &TestServer, user: &str) -> Value {
    let sessions = read_json(&server.home(user).join(".lanrage").join("client.json"));
    sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["peer_id"] == user)
        .map(|s| s["party_id"].clone())
        .unwrap()
}

#[test]
fn a_party_that_ended_is_forgotten_by_the_next_command() {
    let server = TestServer::start();
    let party_id = create_party(&server, "alice");
    for member in ["bob", "carol", "dave"] {
        let _: JoinPartyResponse = json(&server, member, &["party", "join", &party_id, "--json"]);
    }
    // A v1 party ends when its host leaves.
    let _: StatusResponse = json(&server, "alice", &["party", "leave", "--json"]);

    let (named_code, named) = failure(&server, "dave", &["party", "show", &party_id]);
    let dave_still = remembered_party(&server, "dave");
    let (show_code, show) = failure(&server, "bob", &["party", "show"]);
    let (again_code, again) = failure(&server, "bob", &["party", "show"]);
    let left = text(&server, "carol", &["party", "leave"]);
    let ended: StatusResponse = json(&server, "dave", &["party", "leave", "--json"]);

    assert_eq!(named_code, 1);
    assert!(named.contains("(404)"), "{named}");
    assert_eq!(
        dave_still,
        party_id.as_str(),
        "a named party is not forgotten"
    );
    assert_eq!(show_code, 1);
    assert_eq!(
        show.trim(),
        format!("error: party {party_id} has ended; forgotten. Create or join another.")
    );
    assert_eq!(remembered_party(&server, "bob"), Value::Null);
    assert_eq!(again_code, 1);
    assert!(again.contains("none remembered"), "{again}");
    assert_eq!(
        left.trim(),
        format!("Party {party_id} has ended; forgotten. Create or join another.")
    );
    assert_eq!(remembered_party(&server, "carol"), Value::Null);
    assert_eq!(ended.status, "party_deleted");
    assert_eq!(remembered_party(&server, "dave"), Value::Null);
}

#[test]
fn a_removed_member_forgets_the_party_on_leaving_but_not_for_an_unknown_member() {
    let server = TestServer::start();
    let party_id = create_party(&server, "alice");
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party_id, "--json"]);
    let _: KickResponse = json(&server, "alice", &["party", "kick", "bob", "--json"]);

    let (_, unknown) = failure(&server, "alice", &["party", "kick", "zed"]);
    // Reads answer a former member 403: only leaving says it is out.
    let (_, read) = failure(&server, "bob", &["party", "show"]);
    let left = text(&server, "bob", &["party", "leave"]);

    assert!(unknown.contains("(404)"), "{unknown}");
    assert_eq!(remembered_party(&server, "alice"), party_id.as_str());
    assert!(read.contains("(403)"), "{read}");
    assert_eq!(
        left.trim(),
        format!(
            "You are no longer in party {party_id} (removed, or silent for too long); \
             forgotten. Create or join another."
        )
    );
    assert_eq!(remembered_party(&server, "bob"), Value::Null);
}

#[test]
fn watch_says_why_the_party_ended_and_forgets_it() {
    let server = TestServer::start();
    let party_id = create_party(&server, "alice");
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &party_id, "--json"]);
    let mut watcher = watch(&server, "bob", &[], Stdio::null());
    let lines = lines_of(&mut watcher);
    let first = next_line(&lines);

    let _: StatusResponse = json(&server, "alice", &["party", "leave", "--json"]);
    let ended = loop {
        let line = next_line(&lines);
        if line.contains("ended") {
            break line;
        }
    };
    let exit = wait_with_timeout(&mut watcher, Duration::from_secs(30));

    assert!(first.contains("hosted by alice"), "{first}");
    assert!(!first.contains("[1]"), "no event numbers: {first}");
    assert!(
        ended.ends_with("] the host left, so the party ended"),
        "{ended}"
    );
    assert_eq!(exit.code(), Some(0));
    assert_eq!(remembered_party(&server, "bob"), Value::Null);
}

#[test]
fn create_and_join_show_every_address_and_say_how_to_stay() {
    let server = TestServer::start();
    let created = text(&server, "alice", &["party", "create", "Friday LAN"]);
    let party_id: PartyResponse = json(&server, "alice", &["party", "show", "--json"]);
    let party_id = party_id.party.party_id.to_string();
    let joined = text(&server, "bob", &["party", "join", &party_id]);
    let shown = text(&server, "bob", &["party", "show"]);

    for output in [&created, &joined] {
        assert!(
            output.contains("lanrage-control party watch") && output.contains("5 minutes"),
            "{output}"
        );
    }
    let alice_row = joined.lines().find(|l| l.contains("alice (host)")).unwrap();
    assert!(alice_row.contains("10.66.0.1"), "{joined}");
    let bob_row = joined.lines().find(|l| l.contains("bob ")).unwrap();
    assert!(bob_row.contains("10.66.0.2"), "{joined}");
    assert!(!shown.contains("event"), "{shown}");
    assert!(shown.contains("(local)"), "{shown}");
}

#[test]
fn the_host_is_asked_before_a_new_party_ends_the_old_one() {
    let server = TestServer::start();
    let first = create_party(&server, "alice");
    let _: JoinPartyResponse = json(&server, "bob", &["party", "join", &first, "--json"]);
    let other = create_party(&server, "carol");

    let (create_code, refused) = failure(&server, "alice", &["party", "create", "Saturday LAN"]);
    let (join_code, refused_join) = failure(&server, "alice", &["party", "join", &other]);
    let still: PartyResponse = json(&server, "bob", &["party", "show", "--json"]);
    let created: CreatePartyResponse = json(
        &server,
        "alice",
        &["party", "create", "Saturday LAN", "--yes", "--json"],
    );
    let (_, old_gone) = failure(&server, "bob", &["party", "show"]);
    // Hosting alone: nobody else loses a party, so nobody is asked.
    let alone: CreatePartyResponse = json(
        &server,
        "alice",
        &["party", "create", "Sunday LAN", "--json"],
    );

    assert_eq!(create_code, 1);
    assert!(
        refused.contains(&format!(
            "you host party \"Friday LAN\" ({first}) with 2 members; creating a new one ends it for all of them"
        )) && refused.contains("--yes"),
        "{refused}"
    );
    assert_eq!(join_code, 1);
    assert!(
        refused_join.contains("joining another ends it for all of them"),
        "{refused_join}"
    );
    assert_eq!(still.party.party_id.as_str(), first);
    assert_eq!(still.party.peers.len(), 2);
    assert_ne!(created.party_id.as_str(), first);
    assert!(old_gone.contains("has ended; forgotten"), "{old_gone}");
    assert_ne!(alone.party_id, created.party_id);
}

#[test]
fn relay_list_by_region_says_when_the_region_has_none() {
    let server = TestServer::start();
    let none = text(&server, "alice", &["relay", "list"]);
    let none_in_region = text(&server, "alice", &["relay", "list", "--region", "eu"]);
    register_relays(&server, &["x"]);
    let elsewhere = text(&server, "alice", &["relay", "list", "--region", "eu"]);
    let listed = text(&server, "alice", &["relay", "list"]);
    let as_json: RelaysResponse = json(
        &server,
        "alice",
        &["relay", "list", "--region", "eu", "--json"],
    );

    assert_eq!(none.trim(), "No relays registered.");
    assert_eq!(none_in_region.trim(), "No relays in region eu.");
    assert_eq!(elsewhere.trim(), "No relays in region eu.");
    assert!(listed.contains("198.51.100.1:3478"), "{listed}");
    assert!(listed.contains("(local)"), "{listed}");
    assert!(as_json.relays.is_empty());
}

#[test]
fn status_says_who_where_and_in_which_party() {
    let server = TestServer::start();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };

    let fresh = text(&server, "alice", &["status"]);
    let party_id = create_party(&server, "alice");
    let in_party = text(&server, "alice", &["status"]);
    let as_json: Value = json(&server, "alice", &["status", "--json"]);
    let keyed_status = keyed(&server, "erin", &["status", "--json"]);
    let unreachable = command(&dead, &server.home("alice"), "alice", &["status"])
        .output()
        .unwrap();
    let _: StatusResponse = json(&server, "alice", &["party", "leave", "--json"]);
    let _: JoinPartyResponse = {
        let other = create_party(&server, "bob");
        json(&server, "alice", &["party", "join", &other, "--json"])
    };
    let _: StatusResponse = json(&server, "bob", &["party", "leave", "--json"]);
    let after_end: Value = json(&server, "alice", &["status", "--json"]);

    assert!(fresh.contains("Peer:   alice (by peer ID"), "{fresh}");
    assert!(
        fresh.contains(&format!("Server: {} answers (version ", server.url)),
        "{fresh}"
    );
    assert!(fresh.contains("Token:  none kept"), "{fresh}");
    assert!(fresh.contains("Party:  none"), "{fresh}");
    assert!(
        fresh.contains("Socket: not connected") && fresh.contains("party watch"),
        "{fresh}"
    );
    assert!(in_party.contains("Token:  valid until "), "{in_party}");
    assert!(
        in_party.contains(&format!(
            "Party:  \"Friday LAN\" ({party_id}), virtual IP 10.66.0.1"
        )),
        "{in_party}"
    );
    assert_eq!(as_json["peer_id"], "alice");
    assert_eq!(as_json["server"], server.url.as_str());
    assert!(as_json["server_version"].is_string(), "{as_json}");
    assert!(as_json["token_expires_at"].is_string(), "{as_json}");
    assert_eq!(as_json["party_id"], party_id.as_str());
    assert_eq!(as_json["virtual_ip"], "10.66.0.1");
    assert_eq!(as_json["socket"], "not_connected");
    assert!(keyed_status.status.success());
    let keyed_status: Value = serde_json::from_slice(&keyed_status.stdout).unwrap();
    assert!(keyed_status["public_key"].is_string(), "{keyed_status}");
    assert!(
        keyed_status["peer_id"].as_str().unwrap().starts_with("lr1"),
        "{keyed_status}"
    );
    let unreachable_text = String::from_utf8_lossy(&unreachable.stdout);
    assert!(unreachable.status.success());
    assert!(
        unreachable_text.contains("does not answer"),
        "{unreachable_text}"
    );
    assert_eq!(after_end["party_id"], Value::Null);
    assert!(after_end["party_forgotten"].is_string(), "{after_end}");
    assert_eq!(remembered_party(&server, "alice"), Value::Null);
}
