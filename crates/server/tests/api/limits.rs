//! Limits against abuse on the data path: names, identifiers, signal depth
//! and queues, drains, the event log, resume, and operator credentials.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Route::{Create, Join, SendSignal},
    TestApp, create_body, join_body, peer_info, signal_body, spawn_app, spawn_app_behind_proxy,
    spawn_rate_limited_app,
};

const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

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
    app.post_signal(party, token, to, data).await.status()
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
        let party_name = create_body(&format!("LAN{hidden}night"), peer_info("alice"));
        let detail = app.refused(Create(party_name), &alice, UNPROCESSABLE).await;
        assert!(
            detail.contains("name") && detail.contains(&code),
            "{detail}"
        );
        // ...and as a peer name.
        let mut info = peer_info("alice");
        info["name"] = json!(format!("evil{hidden}gpj.exe"));
        let peer_name = create_body("LAN", info);
        let detail = app.refused(Create(peer_name), &alice, UNPROCESSABLE).await;
        assert!(detail.contains(&code), "{detail}");
    }
    assert_eq!(app.party_count().await, 0);

    // Over a socket too.
    let mut socket = app.ws_as("alice", &alice).await;
    socket
        .send(json!({"type": "register_party", "name": "a\u{202E}b", "host_peer": peer_info("alice")}))
        .await;
    socket.expect_error_about("U+202E").await;
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn names_in_every_script_with_joiners_are_kept_as_sent() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("alice").await;
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
        app.join_as(&party, &token, info).await;
    }
    let read = app.read_party(&party, &app.register("p0").await).await;
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

    let (alice, party) = app.host_party("alice").await;
    let mut info = peer_info("alice");
    info["peer_id"] = json!("..");
    let join = Join(&party, join_body(&party, info));
    let detail = app.refused(join, &alice, UNPROCESSABLE).await;
    assert!(detail.contains("peer_id"), "{detail}");
    let signal = SendSignal(&party, signal_body(".", json!({})));
    let detail = app.refused(signal, &alice, UNPROCESSABLE).await;
    assert!(detail.contains("to_peer_id"), "{detail}");

    let mut socket = app.ws_as("alice", &alice).await;
    socket.send_heartbeat(&party, "..").await;
    socket.expect_error_about("only dots").await;
    let mut unauthenticated = app.ws().await;
    unauthenticated
        .send(json!({"type": "auth", "peer_id": "...", "token": alice}))
        .await;
    unauthenticated.expect_error_about("only dots").await;
}

#[tokio::test]
async fn signal_data_deeper_than_32_levels_is_422_and_queues_nothing() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;

    // 126 levels: what used to be accepted and then broke every poll.
    for depth in [33, 126] {
        let deep = SendSignal(&party, signal_body("bob", nested(depth)));
        let detail = app.refused(deep, &alice, UNPROCESSABLE).await;
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
    let error = socket.expect_error_about("32 levels").await;
    assert_eq!(error["request_id"], 1);
    assert!(app.drain_signals(&party, &bob).await.signals.is_empty());

    // 32 levels pass, and the drain answer stays readable.
    assert_eq!(
        send_signal(&app, &party, &alice, "bob", nested(32)).await,
        StatusCode::ACCEPTED
    );
    let drained = app.drain_signals(&party, &bob).await;
    assert_eq!(drained.signals.len(), 1);
    assert_eq!(depth_of(&drained.signals[0].signal_data.clone().into()), 32);
}

#[tokio::test]
async fn one_sender_filling_its_queue_share_never_blocks_another() {
    let app = crate::helpers::spawn_app_with(|c| c.signal_queue_max = 3).await;
    let (alice, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;
    let (mallory, _) = app.join(&party, "mallory").await;

    for n in 0..3 {
        let status = send_signal(&app, &party, &mallory, "bob", json!({"junk": n})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let one_more = SendSignal(&party, signal_body("bob", json!({})));
    let detail = app
        .refused(one_more, &mallory, StatusCode::TOO_MANY_REQUESTS)
        .await;
    assert!(
        detail.contains("you have 3 signals waiting for bob"),
        "the 429 names the sender's own backlog: {detail}"
    );

    // Alice's offers still get through, up to her own share.
    for n in 0..3 {
        let status = send_signal(&app, &party, &alice, "bob", json!({"offer": n})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "alice's signal {n}");
    }
    assert_eq!(
        send_signal(&app, &party, &alice, "bob", json!({})).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // And mallory's share toward someone else is its own.
    assert_eq!(
        send_signal(&app, &party, &mallory, "alice", json!({})).await,
        StatusCode::ACCEPTED
    );

    let drained = app.drain_signals(&party, &bob).await;
    let senders: Vec<&str> = drained
        .signals
        .iter()
        .map(|s| s.from_peer_id.as_str())
        .collect();
    assert_eq!(
        senders,
        ["mallory", "mallory", "mallory", "alice", "alice", "alice"]
    );
    assert_eq!(
        send_signal(&app, &party, &mallory, "bob", json!({})).await,
        StatusCode::ACCEPTED,
        "a drained queue takes signals again"
    );
}

#[tokio::test]
async fn a_drain_removes_only_the_signals_it_answers_with() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;

    assert_eq!(
        send_signal(&app, &party, &alice, "bob", json!({"n": 1})).await,
        StatusCode::ACCEPTED
    );
    // A signal an older server accepted before signal_data depth was
    // bounded: it can never be answered, and must not take the others with
    // it.
    let deep = nested(126).to_string();
    let far = i64::MAX / 2;
    app.sql(&format!(
        "INSERT INTO signals (party_id, from_peer_id, to_peer_id, signal_data, sent_at, expires_at) \
         VALUES ('{party}', 'alice', 'bob', '{deep}', 0, {far})"
    ))
    .await;
    assert_eq!(
        send_signal(&app, &party, &alice, "bob", json!({"n": 2})).await,
        StatusCode::ACCEPTED
    );

    let drained = app.drain_signals(&party, &bob).await;

    let numbers: Vec<&Value> = drained
        .signals
        .iter()
        .map(|s| &s.signal_data.as_map()["n"])
        .collect();
    assert_eq!(numbers, [&json!(1), &json!(2)]);
    // The undeliverable one stays queued (it expires); the answered ones
    // are gone.
    let left = app
        .sql(&format!(
            "SELECT COUNT(*) FROM signals WHERE party_id = '{party}' AND to_peer_id = 'bob'"
        ))
        .await;
    assert_eq!(left, Some(1));
    assert!(app.drain_signals(&party, &bob).await.signals.is_empty());
}

#[tokio::test]
async fn a_capped_drain_leaves_the_rest_queued_in_order() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("host").await;
    let (target, _) = app.join(&party, "target").await;
    let cap = lanrage_server::service::MAX_SIGNALS_PER_DRAIN as usize;
    // More than one drain holds, from senders each within their share.
    let total = cap + 44;
    let senders: Vec<String> = (0..total.div_ceil(60)).map(|n| format!("s{n}")).collect();
    let mut tokens = Vec::new();
    for sender in &senders {
        tokens.push(app.join(&party, sender).await.0);
    }
    for n in 0..total {
        let status = send_signal(&app, &party, &tokens[n / 60], "target", json!({"n": n})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    let first = app.drain_signals(&party, &target).await.signals;
    let second = app.drain_signals(&party, &target).await.signals;
    let third = app.drain_signals(&party, &target).await.signals;

    assert_eq!((first.len(), second.len(), third.len()), (cap, 44, 0));
    let order: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|s| s.signal_data.as_map()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..total as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn drains_at_once_never_answer_the_same_signal_twice() {
    let app = spawn_app_with_queue(200).await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let (bob, _) = app.join(&party, "bob").await;
    for n in 0..150 {
        assert_eq!(
            send_signal(&app, &party, &alice, "bob", json!({"n": n})).await,
            StatusCode::ACCEPTED
        );
    }

    let drains = (0..6).map(|_| app.drain_signals(&party, &bob));
    let answers = futures_util::future::join_all(drains).await;

    let mut seen: Vec<u64> = answers
        .iter()
        .flat_map(|a| &a.signals)
        .map(|s| s.signal_data.as_map()["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..150).collect::<Vec<_>>());
}

async fn spawn_app_with_queue(max: u64) -> TestApp {
    crate::helpers::spawn_app_with(|c| c.signal_queue_max = max).await
}

/// The test process's resident memory (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A party of `members` members whose log gets `events` more events, made
/// fast by members refreshing their info at once. Returns the party, the
/// host's token and the party's seq.
async fn long_log(app: &TestApp, members: usize, events: usize) -> (String, String, u64) {
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let mut tokens = Vec::new();
    for n in 1..members {
        tokens.push((format!("m{n}"), app.join(&party, &format!("m{n}")).await.0));
    }
    let each = events / tokens.len();
    let refreshes = tokens.iter().map(|(peer, token)| {
        let party = &party;
        async move {
            for _ in 0..each {
                app.join_with(party, peer, token).await;
            }
        }
    });
    futures_util::future::join_all(refreshes).await;
    let read = app.read_party(&party, &alice).await;
    (party, alice, read.seq)
}

/// Resumes from `after_seq` 0 on `sockets` sockets at once, `rounds` times;
/// every answer must be the snapshot at `seq`.
async fn resume_storm(
    sockets: &mut [crate::socket::Socket],
    party: &str,
    seq: u64,
    members: usize,
    rounds: usize,
) {
    for round in 0..rounds {
        let resumes = sockets
            .iter_mut()
            .enumerate()
            .map(|(n, socket)| async move {
                socket
                    .send(json!({"type": "resume", "party_id": party, "after_seq": 0,
                             "request_id": format!("{round}-{n}")}))
                    .await;
                let update = socket.expect("party_update").await;
                assert_eq!(update["seq"], seq, "{update}");
                assert_eq!(update["request_id"], format!("{round}-{n}"));
                assert_eq!(update["party"]["peers"].as_object().unwrap().len(), members);
            });
        futures_util::future::join_all(resumes).await;
    }
}

#[tokio::test]
async fn resuming_a_long_log_costs_a_snapshot_and_the_log_stays_bounded() {
    let app = spawn_app().await;
    let members = 8;
    let (party, alice, seq) = long_log(&app, members, 3000).await;
    assert!(seq > 3000, "{seq}");
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(app.ws_as("alice", &alice).await);
    }
    resume_storm(&mut sockets, &party, seq, members, 1).await;
    let before = rss_kib();

    resume_storm(&mut sockets, &party, seq, members, 10).await;

    let grown = rss_kib().saturating_sub(before);
    eprintln!("log of {seq}: RSS grew by {grown} KiB over 40 resumes");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB over 40 resumes");
    // Trimmed as it was written: the newest 1,024 events, whatever their age.
    let party_id = lanrage_proto::PartyId::parse(party.clone()).unwrap();
    let logged: Vec<u64> = app
        .service
        .store()
        .events_after(&party_id, 0, u64::MAX)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.party_seq().map(|(_, seq)| seq))
        .collect();
    assert_eq!(logged, (seq - 1023..=seq).collect::<Vec<_>>());
    // What the log holds still replays.
    let socket = &mut sockets[0];
    socket
        .send(json!({"type": "resume", "party_id": party, "after_seq": seq - 3}))
        .await;
    for expected in seq - 2..=seq {
        assert_eq!(socket.expect("party_update").await["seq"], expected);
    }
    assert_eq!(socket.expect("ack").await["status"], "resumed");
}

#[tokio::test]
async fn resume_reads_at_most_the_replay_limit_of_an_untrimmed_log() {
    // A log kept long on purpose: resume must not read it to decide.
    let app = crate::helpers::spawn_app_with(|c| {
        c.event_log_max_per_party = 1_000_000;
        c.ws_max_sockets_per_peer = 8;
    })
    .await;
    let members = 8;
    let (party, alice, seq) = long_log(&app, members, 5000).await;
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(app.ws_as("alice", &alice).await);
    }
    resume_storm(&mut sockets, &party, seq, members, 1).await;
    let before = rss_kib();
    let started = std::time::Instant::now();

    resume_storm(&mut sockets, &party, seq, members, 5).await;

    let grown = rss_kib().saturating_sub(before);
    eprintln!(
        "untrimmed log of {seq}: RSS grew by {grown} KiB over 40 resumes in {:?}",
        started.elapsed()
    );
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB over 40 resumes");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "40 resumes took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn after_seq_must_be_a_whole_number() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let mut socket = app.ws_as("alice", &alice).await;

    for bad in [json!(-1), json!(-0.5), json!(1.5), json!("1"), json!(null)] {
        socket
            .send(json!({"type": "resume", "party_id": party, "after_seq": bad, "request_id": 9}))
            .await;
        let error = socket.expect("error").await;
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("after_seq") && message.contains("whole number"),
            "{bad}: {message}"
        );
        assert_eq!(error["request_id"], 9);
    }
    // A whole number written as a float is still one.
    socket
        .send(json!({"type": "resume", "party_id": party, "after_seq": 1.0}))
        .await;
    assert_eq!(socket.expect("ack").await["status"], "resumed");
}

/// Statuses of `n` requests sent one after the other.
async fn statuses(app: &TestApp, n: usize, method: Method, path: &str, key: &str) -> Vec<u16> {
    let body = (method == Method::POST).then(
        || json!({"relay_id": "r1", "public_ip": "198.51.100.7", "port": 51820, "region": "eu"}),
    );
    let mut seen = Vec::new();
    for _ in 0..n {
        let response = app
            .send(method.clone(), path, Some(key), body.clone())
            .await;
        seen.push(response.status().as_u16());
    }
    seen
}

#[tokio::test]
async fn guessing_the_relay_key_is_limited_at_the_write_rate_on_every_relay_route() {
    for (method, path) in [(Method::POST, "/relays"), (Method::DELETE, "/relays/r1")] {
        let app = spawn_rate_limited_app(|c| c.rate_limit_writes_per_sec = 1).await;

        // A burst of 4 (1/s, bursts of 4×); the read quota would allow 400.
        let guesses = statuses(&app, 8, method.clone(), path, "guess").await;

        let limited = guesses.iter().position(|s| *s == 429);
        assert!(
            limited.is_some_and(|at| at <= 5),
            "{method} {path}: {guesses:?}"
        );
        assert!(guesses[..limited.unwrap()].iter().all(|s| *s == 403));
        // While limited, the right key is not even compared: a right guess
        // looks like any other.
        let response = app
            .send(method.clone(), path, Some(crate::helpers::RELAY_KEY), None)
            .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("rate limit"));
    }
}

#[tokio::test]
async fn every_ipv6_address_of_one_slash_64_shares_its_limits() {
    let app = spawn_app_behind_proxy().await;
    let mut seen = Vec::new();
    for n in 0..8 {
        // A new address of the same /64 for every request.
        let from = format!("2001:db8:7:7:{n:x}::1");
        let response = app.register_from(&format!("v6-{n}"), &from).await;
        seen.push(response.status().as_u16());
    }
    let other = app.register_from("v6-99", "2001:db8:7:8::1").await;

    assert!(seen.contains(&429), "{seen:?}");
    assert_eq!(other.status(), StatusCode::OK, "another /64 has its own");
}
