//! The real `lanrage-control serve` process: first run, logs, signals.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A server process and its log lines, read on a thread.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// A temporary folder, and the URL of a SQLite database in it that the
/// server will create; the folder goes when the test drops it.
fn fresh_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("control.db").display());
    (dir, url)
}

fn spawn(db_url: &str, extra_env: &[(&str, &str)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lanrage-control"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "off"])
        .env("LANRAGE_DATABASE_URL", db_url)
        .env("LANRAGE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr: ChildStderr = child.stderr.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    Process {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Process {
    /// The first JSON log line for which `pick` returns something.
    fn wait_for<T>(&mut self, mut pick: impl FnMut(&serde_json::Value) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("log line never came; saw {:#?}", self.seen));
            self.seen.push(line.clone());
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if let Some(found) = pick(&json) {
                return found;
            }
        }
    }

    fn address(&mut self) -> String {
        self.wait_for(|line| line["address"].as_str().map(str::to_owned))
    }

    /// Sends SIGTERM and returns the exit code and how long the exit took.
    fn terminate(self) -> (Option<i32>, Duration) {
        self.signal("-TERM")
    }

    fn signal(mut self, signal: &str) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("server did not stop within 10 s of {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `lanrage-control` with `args` and `env` to its end.
fn run_control(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanrage-control"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// As [`run_control`], for a run that must fail; its stderr.
fn failure(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = run_control(args, env);
    assert!(!output.status.success(), "{args:?} {env:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A minimal HTTP/1.1 exchange; returns the whole response.
fn http(address: &str, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serves_on_first_run_logs_json_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new").join("folder").join("control.db");
    let mut server = spawn(&format!("sqlite://{}", db.display()), &[]);

    let address = server.address();
    let root = http(&address, "GET", "/");
    let register = http(&address, "POST", "/auth/register?peer_id=log-probe");

    assert!(root.starts_with("HTTP/1.1 200"), "{root}");
    assert!(root.contains("\"service\":\"LANrage Control Plane\""));
    assert!(register.starts_with("HTTP/1.1 200"), "{register}");
    assert!(db.exists(), "the database and its folders are created");
    // One span per request, carrying the peer it acted for.
    let logged =
        server.wait_for(|line| (line["span"]["path"] == "/auth/register").then(|| line.clone()));
    assert_eq!(logged["span"]["peer_id"], "log-probe", "{logged}");
    assert_eq!(logged["span"]["method"], "POST");
    assert_eq!(logged["status"], 200);

    let (code, took) = server.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[test]
fn ctrl_c_stops_it_cleanly_too() {
    let (_dir, db) = fresh_database();
    let mut server = spawn(&db, &[]);
    server.address();

    let (code, took) = server.signal("-INT");

    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[test]
fn state_survives_a_process_restart() {
    let (_dir, url) = fresh_database();
    let relay_key = [("LANRAGE_RELAY_KEY", "k")];
    let mut first = spawn(&url, &relay_key);
    let address = first.address();
    let registered = register_relay(&address, "k");
    assert!(registered.starts_with("HTTP/1.1 200"), "{registered}");
    assert_eq!(first.terminate().0, Some(0));

    let mut second = spawn(&url, &relay_key);
    let address = second.address();
    let root = http(&address, "GET", "/");

    assert!(root.contains("\"relays\":1"), "{root}");
    assert_eq!(second.terminate().0, Some(0));
}

/// An acknowledged write is in the database even when the process is
/// killed at once after the answer, in either synchronous mode.
#[test]
fn acknowledged_writes_survive_kill_9() {
    for sync in ["normal", "full"] {
        let (_dir, url) = fresh_database();
        let env = [
            ("LANRAGE_RELAY_KEY", "k"),
            ("LANRAGE_SQLITE_SYNCHRONOUS", sync),
        ];
        let mut first = spawn(&url, &env);
        let address = first.address();
        let registered = register_relay(&address, "k");
        assert!(registered.starts_with("HTTP/1.1 200"), "{registered}");
        assert_eq!(first.signal("-KILL").0, None, "{sync}: killed, not exited");

        let mut second = spawn(&url, &env);
        let address = second.address();
        let root = http(&address, "GET", "/");

        assert!(root.contains("\"relays\":1"), "{sync}: {root}");
        assert_eq!(second.terminate().0, Some(0));
    }
}

#[test]
fn a_bad_setting_fails_fast_naming_it() {
    let stderr = failure(&["serve", "--peer-timeout-secs", "0"], &[]);
    assert!(stderr.contains("--peer-timeout-secs"), "{stderr}");

    for (url, expected) in [
        ("mysql://nope", "unsupported database URL"),
        ("sqlite://", "not a usable SQLite database path"),
        ("sqlite::memory:", "not a usable SQLite database path"),
    ] {
        let stderr = failure(
            &["serve", "--listen", "127.0.0.1:0"],
            &[("LANRAGE_DATABASE_URL", url)],
        );
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }

    let (_dir, db) = fresh_database();
    // Only values the operator gave can contradict each other.
    let stderr = failure(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--peer-timeout-secs",
            "2",
            "--heartbeat-flush-ms",
            "1000",
        ],
        &[("LANRAGE_DATABASE_URL", &db)],
    );
    assert!(
        stderr.contains("--heartbeat-flush-ms") && stderr.contains("--peer-timeout-secs"),
        "{stderr}"
    );

    let cors = "https://ok.example,not-an-origin";
    let stderr = failure(&["serve", "--cors-origins", cors], &[]);
    assert!(stderr.contains("--cors-origins"), "{stderr}");
}

/// Settings only the environment or the config file gives are checked
/// like flags: a usage error (status 2) naming the setting, never a panic.
#[test]
fn malformed_settings_in_the_environment_or_a_file_stop_serve_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control.toml");
    std::fs::write(&file, "cleanup-interval-secs = 0\n").unwrap();
    let file = file.to_str().unwrap();
    for (env, expected) in [
        (
            vec![("LANRAGE_PEER_TIMEOUT_SECS", "abc")],
            "--peer-timeout-secs",
        ),
        (
            vec![("LANRAGE_PEER_TIMEOUT_SECS", "0")],
            "--peer-timeout-secs (LANRAGE_PEER_TIMEOUT_SECS) must be from 1 to 31536000, not 0",
        ),
        (
            vec![("LANRAGE_TOKEN_TTL_SECS", "18446744073709551615")],
            "LANRAGE_TOKEN_TTL_SECS",
        ),
        (
            vec![("LANRAGE_WS_PING_INTERVAL_SECS", "0")],
            "LANRAGE_WS_PING_INTERVAL_SECS",
        ),
        (
            vec![("LANRAGE_TLS_CERT", "/only/the/cert.pem")],
            "--tls-cert (LANRAGE_TLS_CERT) needs --tls-key (LANRAGE_TLS_KEY)",
        ),
        (
            vec![("LANRAGE_CONFIG", file)],
            "LANRAGE_CLEANUP_INTERVAL_SECS",
        ),
    ] {
        // Were the setting let through, the server would stop here with
        // status 1 instead of running on.
        let mut all = vec![("LANRAGE_DATABASE_URL", "mysql://nope")];
        all.extend(env.iter().copied());
        let output = run_control(&["serve", "--listen", "127.0.0.1:0"], &all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{env:?}: {stderr}");
    }
}

/// `POST /relays` with `key`; the status line of the answer.
fn register_relay(address: &str, key: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    let body = r#"{"relay_id":"r1","public_ip":"198.51.100.1","port":3478}"#;
    write!(
        stream,
        "POST /relays HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_config_file_sets_what_flags_and_environment_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control.toml");
    std::fs::write(
        &file,
        "relay-key = \"from-file\"\nlisten = \"127.0.0.1:1\"\ncleanup-interval-secs = 30\n",
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    // The flag --listen (in spawn) and the environment's relay key win
    // over the file; the file's other settings apply.
    let mut server = spawn(
        &db,
        &[
            ("LANRAGE_CONFIG", file.to_str().unwrap()),
            ("LANRAGE_RELAY_KEY", "from-env"),
        ],
    );
    let address = server.address();

    assert!(register_relay(&address, "from-env").starts_with("HTTP/1.1 200"));
    assert!(register_relay(&address, "from-file").starts_with("HTTP/1.1 403"));
    assert_eq!(server.terminate().0, Some(0));

    let stderr = failure(&["serve", "--config", "/nonexistent/control.toml"], &[]);
    assert!(stderr.contains("/nonexistent/control.toml"), "{stderr}");
}

#[test]
fn a_two_second_peer_timeout_starts_with_every_other_default() {
    let (_dir, db) = fresh_database();
    let mut server = spawn(&db, &[("LANRAGE_PEER_TIMEOUT_SECS", "2")]);
    let address = server.address();
    assert!(http(&address, "GET", "/").starts_with("HTTP/1.1 200"));
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}

/// A connection to `address` from the local address `from` (127.0.0.0/8
/// holds many), which never sends anything.
fn connect_from(from: &str, address: &str) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into())?;
    let remote: std::net::SocketAddr = address.parse().unwrap();
    socket.connect_timeout(&remote.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// `GET path` from the local address `from`: the whole answer, or what of
/// it came within `within`.
fn get_from(from: &str, address: &str, path: &str, within: Duration) -> String {
    let mut response = String::new();
    let Ok(mut stream) = connect_from(from, address) else {
        return response;
    };
    let _ = stream.set_read_timeout(Some(within));
    if write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .is_ok()
    {
        let _ = stream.read_to_string(&mut response);
    }
    response
}

/// `GET /` from the local address `from`: the status line, if answered
/// within `within`.
fn status_from(from: &str, address: &str, within: Duration) -> Option<String> {
    get_from(from, address, "/", within)
        .lines()
        .next()
        .map(str::to_owned)
}

/// The server's file-descriptor limit, lowered from outside as an
/// operator's `LimitNOFILE` (or a stock service's 1024) would set it.
fn limit_descriptors(server: &Process, limit: u64) {
    let pid = i32::try_from(server.child.id()).unwrap();
    rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((limit, limit)), None).unwrap();
}

#[test]
fn a_flood_from_one_address_leaves_others_served() {
    let (_dir, db) = fresh_database();
    let mut server = spawn(&db, &[("LANRAGE_MAX_CONNECTIONS_PER_IP", "20")]);
    let address = server.address();
    limit_descriptors(&server, 96);
    // Far more than the descriptor limit, all from one address, never
    // sending a byte.
    let flood: Vec<_> = (0..300)
        .filter_map(|_| connect_from("127.0.0.1", &address).ok())
        .collect();
    assert!(!flood.is_empty());
    for _ in 0..5 {
        let status = status_from("127.0.0.2", &address, Duration::from_secs(2));
        assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    }
    let metrics = get_from("127.0.0.3", &address, "/metrics", Duration::from_secs(5));
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"lanrage_connections_refused_total{kind="per_address"} "#))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 200), "{metrics}");
    drop(flood);
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn running_out_of_descriptors_recovers_once_timeouts_free_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("control.db");
    let mut server = spawn(
        &format!("sqlite://{}", db.display()),
        &[
            ("LANRAGE_MAX_CONNECTIONS_PER_IP", "100000"),
            ("LANRAGE_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ],
    );
    let address = server.address();
    limit_descriptors(&server, 96);
    let flood: Vec<_> = (0..300)
        .filter_map(|_| connect_from("127.0.0.1", &address).ok())
        .collect();
    assert!(flood.len() > 96, "the backlog took the flood");
    // The flood holds every descriptor; the header timeout frees them a
    // batch at a time, and the other address's turn comes.
    let started = Instant::now();
    let status = status_from("127.0.0.2", &address, Duration::from_secs(20));
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(flood);
    let metrics = http(&address, "GET", "/metrics");
    let exhausted = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"lanrage_accept_errors_total{kind="descriptors"} "#))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(exhausted.is_some_and(|n| n > 0), "{metrics}");
    server.wait_for(|line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("out of file descriptors"))
            .then_some(())
    });
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn text_logs_into_a_pipe_carry_no_colour_codes() {
    let (_dir, db_url) = fresh_database();
    let server = spawn(&db_url, &[("LANRAGE_LOG_FORMAT", "text")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server.lines.recv_timeout(left).expect("a log line");
        if line.contains("listening") {
            break line;
        }
    };
    assert!(!line.contains('\u{1b}'), "{line:?}");
    server.terminate();
}
