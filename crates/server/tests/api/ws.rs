//! The WebSocket channel: authentication, requests, fan-out from every
//! source, signals, limits, resume.

use std::time::Duration;

use futures_util::SinkExt;

use lanrage_proto::{PartyId, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, peer_info, spawn_app, spawn_app_with, spawn_rate_limited_app};

const QUIET: Duration = Duration::from_millis(300);

/// Registers alice, sends `greeting` with her token added on a fresh
/// socket, and expects `auth_ok`, which it returns.
async fn greet_as_alice(app: &TestApp, mut greeting: Value) -> Value {
    let token = app.register("alice").await;
    let mut socket = app.ws().await;
    greeting["token"] = json!(token);
    socket.send(greeting).await;
    socket.expect("auth_ok").await
}

#[tokio::test]
async fn auth_message_gets_auth_ok_with_the_request_id() {
    let app = spawn_app().await;

    let auth = json!({"type": "auth", "peer_id": "alice", "request_id": 7});
    let ok = greet_as_alice(&app, auth).await;

    assert_eq!(
        (ok["peer_id"].as_str(), ok["request_id"].as_i64()),
        (Some("alice"), Some(7))
    );
}

#[tokio::test]
async fn hello_is_an_alias_of_auth() {
    let app = spawn_app().await;

    greet_as_alice(&app, json!({"type": "hello", "peer_id": "alice"})).await;
}

#[tokio::test]
async fn a_header_token_authenticates_the_upgrade() {
    let app = spawn_app().await;
    let token = app.register("alice").await;

    let mut socket = app.ws_with_header(&token).await;

    assert_eq!(socket.expect("auth_ok").await["peer_id"], "alice");
}

#[tokio::test]
async fn bad_tokens_get_an_error_and_a_close() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    let mut wrong = app.ws().await;
    wrong
        .send(json!({"type": "auth", "peer_id": "alice", "token": "forged"}))
        .await;
    wrong.expect_error_about("invalid token").await;
    wrong.expect_close().await;

    let mut someone_elses = app.ws().await;
    someone_elses
        .send(json!({"type": "auth", "peer_id": "bob", "token": alice}))
        .await;
    someone_elses.expect("error").await;
    someone_elses.expect_close().await;

    let mut bad_header = app.ws_with_header("forged").await;
    bad_header.expect("error").await;
    bad_header.expect_close().await;
}

#[tokio::test]
async fn unauthenticated_sockets_can_do_nothing_and_are_closed_when_silent() {
    let app = spawn_app_with(|c| c.ws_auth_timeout_secs = 1).await;
    let (_, created) = app.create_party("alice").await;
    let mut socket = app.ws().await;

    socket
        .send(json!({"type": "join_party", "party_id": created.party_id, "peer": peer_info("mallory")}))
        .await;
    socket.expect_error_about("authenticate first").await;

    let close = socket.expect_close().await;
    assert!(
        close.is_none() || close.is_some_and(|f| u16::from(f.code) != 1000 || !f.reason.is_empty())
    );
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn junk_frames_get_errors_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let (_, created, mut socket) = app.host_with_socket("alice").await;

    for junk in [
        "not json",
        "[1,2]",
        "{}",
        r#"{"type": "dance"}"#,
        r#"{"type": "heartbeat"}"#,
        r#"{"type": "heartbeat", "party_id": 5, "peer_id": "alice", "request_id": "r1"}"#,
        r#"{"type": "join_party", "party_id": "x", "peer": {"peer_id": "alice"}}"#,
        r#"{"type": "auth", "peer_id": "alice", "token": "again"}"#,
    ] {
        socket.send_raw(Message::Text(junk.into())).await;
        let error = socket.expect("error").await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{junk}");
    }
    socket.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    socket.expect("error").await;

    socket
        .send(json!({"type": "heartbeat", "party_id": created.party_id, "peer_id": "alice", "request_id": "hb"}))
        .await;
    let ack = socket.expect("ack").await;
    assert_eq!(
        (ack["status"].as_str(), ack["request_id"].as_str()),
        (Some("ok"), Some("hb"))
    );
}

#[tokio::test]
async fn the_request_id_is_echoed_on_errors() {
    let app = spawn_app().await;
    let (_, mut socket) = app.registered_socket("alice").await;

    socket
        .send(json!({"type": "leave_party", "party_id": "nope", "peer_id": "alice", "request_id": {"n": 1}}))
        .await;

    let error = socket.expect_error_about("not found").await;
    assert_eq!(error["request_id"], json!({"n": 1}));
}

#[tokio::test]
async fn register_and_join_over_the_socket_answer_with_the_party() {
    let app = spawn_app().await;
    let (_, mut host) = app.registered_socket("alice").await;
    let (_, mut guest) = app.registered_socket("bob").await;

    host.send(json!({"type": "register_party", "name": "LAN", "host_peer": peer_info("alice"), "request_id": 1}))
        .await;
    let created = host.expect_party_reply().await;
    let party_id = created["party"]["party_id"].as_str().unwrap().to_owned();
    assert_eq!(created["virtual_ip"], "10.66.0.1");
    assert_eq!(
        (created["seq"].as_u64(), created["request_id"].as_i64()),
        (Some(1), Some(1))
    );

    guest
        .send(json!({"type": "join_party", "party_id": party_id, "peer": peer_info("bob"), "request_id": 2}))
        .await;
    let joined = guest.expect_party_reply().await;
    assert_eq!(joined["virtual_ip"], "10.66.0.2");
    assert_eq!(joined["seq"], 2);
    assert_eq!(joined["party"]["peers"].as_object().unwrap().len(), 2);
    // A reply, not a snapshot, with a join answer's extras.
    assert!(joined.get("snapshot").is_none());
    assert_eq!(joined["verified"], json!({"alice": false, "bob": false}));

    let event = host.expect_joined("bob").await;
    assert_eq!(
        (event["party_id"].as_str(), event["seq"].as_u64()),
        (Some(party_id.as_str()), Some(2))
    );
}

#[tokio::test]
async fn http_changes_reach_every_member_socket_once() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut host = app.ws_as("alice", &party.alice).await;
    let mut guest = app.ws_as("bob", &party.bob).await;

    let (_, carol_joined) = app.join(&party.id, "carol").await;
    for socket in [&mut host, &mut guest] {
        let event = socket.expect_joined("carol").await;
        assert_eq!(event["seq"].as_u64(), Some(carol_joined.seq));
    }

    let mut info = peer_info("bob");
    info["public_port"] = json!(40001);
    app.join_as(&party.id, &party.bob, info).await;
    for socket in [&mut host, &mut guest] {
        let update = socket.expect("party_update").await;
        assert_eq!(update["party"]["peers"]["bob"]["public_port"], 40001);
        assert_eq!(update["seq"], 4);
    }

    app.leave(&party.id, "bob", &party.bob).await;
    for socket in [&mut host, &mut guest] {
        let left = socket.expect_left("bob").await;
        assert_eq!(left["seq"].as_u64(), Some(5));
    }
    guest.expect_silence(QUIET).await;

    app.leave(&party.id, "alice", &party.alice).await;
    let ended = host.expect("party_ended").await;
    assert_eq!(
        (ended["reason"].as_str(), ended["seq"].as_u64()),
        (Some("host_left"), Some(6))
    );
    host.expect_silence(QUIET).await;
    guest.expect_silence(QUIET).await;
}

#[tokio::test]
async fn outsiders_receive_nothing() {
    let app = spawn_app().await;
    let (party, _, mut outsider) = app.party_and_outsider_with_socket("eve").await;

    app.join(&party, "bob").await;

    outsider.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_socket_opened_before_joining_gets_events_after_joining() {
    let app = spawn_app().await;
    let (party, bob, mut early) = app.party_and_outsider_with_socket("bob").await;

    app.join_with(&party, "bob", &bob).await;
    app.join(&party, "carol").await;

    early.expect_joined("bob").await;
    early.expect_joined("carol").await;
}

#[tokio::test]
async fn moving_to_another_party_is_a_leave_there_and_a_join_here() {
    let app = spawn_app().await;
    let first = app.party_of_two().await;
    let (zed, second) = app.create_party("zed").await;
    let mut old = app.ws_as("alice", &first.alice).await;
    let mut new = app.ws_as("zed", &zed).await;

    app.join_with(second.party_id.as_str(), "bob", &first.bob)
        .await;

    old.expect_left("bob").await;
    new.expect_joined("bob").await;
    old.expect_silence(QUIET).await;
    new.expect_silence(QUIET).await;
}

#[tokio::test]
async fn cleanup_removals_reach_the_sockets() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (alice, created) = app.create_party("alice").await;
    app.join(created.party_id.as_str(), "bob").await;
    let mut host = app.ws_as("alice", &alice).await;
    let later = Timestamp::now().plus_secs(61);
    app.touch(&created.party_id, "alice", later).await;

    app.cleanup_at(later).await;

    assert_eq!(host.expect_left("bob").await["seq"], 3);

    app.cleanup_at(later.plus_secs(61)).await;
    assert_eq!(host.expect("party_ended").await["reason"], "host_timed_out");
}

#[tokio::test]
async fn many_members_each_receive_each_event() {
    let app = spawn_app().await;
    let (_, created, host) = app.host_with_socket("alice").await;
    let party = created.party_id.to_string();
    let members: Vec<String> = (0..32).map(|i| format!("member{i}")).collect();
    let mut sockets = vec![host];
    sockets.extend(app.members_with_sockets(&party, &members).await);
    // Drain the joins the host's socket saw after it connected.
    for member in &members {
        sockets[0].expect_joined(member).await;
    }

    let (late, joined) = app.join(&party, "late").await;
    for socket in &mut sockets {
        let event = socket.expect_joined("late").await;
        assert_eq!(event["seq"].as_u64(), Some(joined.seq));
    }
    app.leave(&party, "late", &late).await;
    for socket in &mut sockets {
        socket.expect_left("late").await;
    }
}

#[tokio::test]
async fn signals_flow_both_ways_over_sockets() {
    let app = spawn_app().await;
    let (party, mut a, mut b) = app.party_of_two_with_sockets().await;

    let offer = json!({"type": "signal", "party_id": party.id, "from_peer_id": "alice",
                       "to_peer_id": "bob", "signal_data": {"type": "offer"}, "request_id": 1});
    a.send(offer).await;
    assert_eq!(a.expect("ack").await["status"], "sent");
    let offer = b.expect("signal").await;
    assert_eq!(offer["signal_data"], json!({"type": "offer"}));
    assert_eq!(offer["from_peer_id"], "alice");
    assert!(offer["sent_at"].is_string());

    b.send_signal(&party.id, "bob", "alice", json!({"type": "answer"}))
        .await;
    b.expect("ack").await;
    assert_eq!(
        a.expect("signal").await["signal_data"],
        json!({"type": "answer"})
    );
}

#[tokio::test]
async fn forged_senders_and_outsiders_cannot_signal() {
    let app = spawn_app().await;
    let (party, mut a, mut b) = app.party_of_two_with_sockets().await;
    let (_, mut e) = app.registered_socket("eve").await;

    a.send_signal(&party.id, "carol", "bob", json!({})).await;
    a.expect_error_about("cannot send signals as carol").await;
    e.send_signal(&party.id, "eve", "bob", json!({})).await;
    e.expect("error").await;

    b.expect_silence(QUIET).await;
}

#[tokio::test]
async fn http_signals_reach_a_connected_target_at_once_and_only_once() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut b = app.ws_as("bob", &party.bob).await;

    let candidate = json!({"candidate": "198.51.100.4:5000"});
    let response = app
        .post_signal(&party.id, &party.alice, "bob", candidate)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let signal = b.expect("signal").await;
    assert_eq!(signal["signal_data"]["candidate"], "198.51.100.4:5000");
    // Delivered live, so a poll does not hand it out again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let polled = app.drain_signals(&party.id, &party.bob).await;
        if polled.signals.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signal still queued after live delivery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn socket_signals_to_an_offline_target_wait_for_its_poll() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut a = app.ws_as("alice", &party.alice).await;

    a.send_signal(&party.id, "alice", "bob", json!({"type": "offer"}))
        .await;
    a.expect("ack").await;

    let polled = app.drain_signals(&party.id, &party.bob).await;
    assert_eq!(polled.signals.len(), 1);
    assert_eq!(polled.signals[0].from_peer_id.as_str(), "alice");
}

#[tokio::test]
async fn socket_heartbeats_refresh_last_seen_like_http() {
    let app = spawn_app().await;
    let (_, created, mut socket) = app.host_with_socket("alice").await;
    let party = created.party_id.as_str();
    let before = created.party.peers[&created.party.host_id].last_seen;

    socket.send_heartbeat(party, "alice").await;
    socket.expect("ack").await;

    let members = app.stored_members(&created.party_id).await;
    assert!(members[0].peer.last_seen > before);
    socket.send_heartbeat(party, "bob").await;
    socket.expect_error_about("cannot act as bob").await;
}

#[tokio::test]
async fn leave_over_the_socket_is_acknowledged_and_fanned_out() {
    let app = spawn_app().await;
    let (party, mut host, mut guest) = app.party_of_two_with_sockets().await;

    guest
        .send(
            json!({"type": "leave_party", "party_id": party.id, "peer_id": "bob", "request_id": 3}),
        )
        .await;

    // The leaver's own socket gets the ack and the event, in either order.
    let frames = [guest.recv().await, guest.recv().await];
    let ack = frames.iter().find(|f| f["type"] == "ack").expect("an ack");
    assert!(frames.iter().any(|f| f["type"] == "peer_left"));
    assert_eq!(
        (ack["status"].as_str(), ack["request_id"].as_i64()),
        (Some("left"), Some(3))
    );
    host.expect_left("bob").await;
}

#[tokio::test]
async fn a_reconnecting_member_resumes_where_it_left_off() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let socket = app.ws_as("bob", &party.bob).await;
    drop(socket);
    app.join(&party.id, "carol").await;
    app.join(&party.id, "dave").await;

    let mut again = app.ws_as("bob", &party.bob).await;
    again.send(json!({"type": "resume", "party_id": party.id, "after_seq": party.joined.seq, "request_id": "r"})).await;

    let replayed: Vec<Value> = vec![
        again.expect_joined("carol").await,
        again.expect_joined("dave").await,
    ];
    assert_eq!(
        (replayed[0]["seq"].as_u64(), replayed[1]["seq"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(again.expect("ack").await["status"], "resumed");

    // Live events continue after the replay, without duplicates.
    app.join(&party.id, "erin").await;
    assert_eq!(again.expect("peer_joined").await["seq"], 5);
    again.expect_silence(QUIET).await;
}

#[tokio::test]
async fn resume_without_the_history_sends_the_current_party() {
    let app = spawn_app().await;
    let (_, created, mut socket) = app.host_with_socket("alice").await;

    // A seq from the future (say, a database restored from backup): the
    // history cannot be replayed, so the snapshot comes instead.
    socket.send_resume(created.party_id.as_str(), 99).await;

    let update = socket.expect("party_update").await;
    assert_eq!(update["seq"], 1);
    assert_eq!(update["virtual_ip"], "10.66.0.1");
    assert_eq!(update["party"]["host_id"], "alice");
    // A snapshot says so, and carries a party read's extras.
    assert_eq!(update["snapshot"], true);
    assert_eq!(update["verified"], json!({"alice": false}));
}

#[tokio::test]
async fn only_members_resume() {
    let app = spawn_app().await;
    let (party, _, mut socket) = app.party_and_outsider_with_socket("eve").await;

    socket.send_resume(&party, 0).await;

    socket.expect("error").await;
}

#[tokio::test]
async fn a_slow_reader_is_dropped_while_others_keep_receiving() {
    let app = spawn_app_with(|c| {
        c.ws_send_queue = 8;
        c.signal_queue_max = 10_000;
    })
    .await;
    let party = app.party_of_two().await;
    let mut fast = app.ws_as("alice", &party.alice).await;
    let mut slow = app.ws_slow().await;
    slow.authenticate("bob", &party.bob).await;

    // Bob stops reading while 4 MB of signals head his way.
    let blob = "x".repeat(15_000);
    for _ in 0..300 {
        let response = app
            .post_signal(&party.id, &party.alice, "bob", json!({"blob": blob}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    // The server gave up on Bob's socket as a slow reader (its close frame
    // may not fit in the full buffers, so the server's count is the proof)...
    let close = slow.expect_close().await;
    if let Some(frame) = close {
        assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    }
    assert_eq!(app.service.metrics().ws_slow_readers_dropped.get(), 1);
    // ...and Alice still hears of every change.
    app.join(&party.id, "carol").await;
    fast.expect_joined("carol").await;
}

#[tokio::test]
async fn a_peer_over_its_socket_cap_loses_its_oldest_socket() {
    let app = spawn_app_with(|c| c.ws_max_sockets_per_peer = 2).await;
    let token = app.register("alice").await;
    let mut first = app.ws_as("alice", &token).await;
    let _second = app.ws_as("alice", &token).await;

    let _third = app.ws_as("alice", &token).await;

    let frame = first.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.contains("replaced"));
}

#[tokio::test]
async fn oversized_frames_close_the_socket_not_the_server() {
    let app = spawn_app_with(|c| c.ws_max_message_bytes = 4096).await;
    let (token, mut socket) = app.registered_socket("alice").await;

    let _ = socket
        .stream
        .send(Message::Text("x".repeat(10_000).into()))
        .await;

    socket.expect_close().await;
    let mut again = app.ws_as("alice", &token).await;
    again.send_heartbeat("none", "alice").await;
    again.expect("error").await;
}

#[tokio::test]
async fn unresponsive_sockets_are_closed() {
    let app = spawn_app_with(|c| c.ws_ping_interval_secs = 1).await;
    let (_, mut socket) = app.registered_socket("alice").await;

    // Not reading means not answering pings either.
    tokio::time::sleep(Duration::from_secs(8)).await;

    // The socket ends; a client this unresponsive may not read the close
    // frame before the connection goes.
    if let Some(frame) = socket.expect_close().await {
        assert_eq!(u16::from(frame.code), 1001);
    }
}

#[tokio::test]
async fn shutdown_sends_every_socket_a_close_frame() {
    let mut app = spawn_app().await;
    let (_, mut socket) = app.registered_socket("alice").await;

    app.stop_server().await;

    let frame = socket.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
}

#[tokio::test]
async fn party_ids_in_frames_are_validated() {
    let app = spawn_app().await;
    let (_, mut socket) = app.registered_socket("alice").await;

    socket.send_resume("../x", 0).await;

    socket.expect_error_about("party_id").await;
    let _ = PartyId::parse("ok").unwrap();
}

#[tokio::test]
async fn socket_changes_reach_many_members_of_each_kind() {
    let app = spawn_app().await;
    let (_, mut host) = app.registered_socket("alice").await;
    host.send(json!({"type": "register_party", "name": "LAN", "host_peer": peer_info("alice")}))
        .await;
    let party = host.expect_party_reply().await["party"]["party_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let names: Vec<String> = (0..32).map(|i| format!("m{i}")).collect();
    let mut members = app.members_with_sockets(&party, &names).await;
    for name in &names {
        host.expect_joined(name).await;
    }
    let (last, rest) = members.split_last_mut().unwrap();

    // A member refreshes its info over its socket: one party_update each.
    let mut info = peer_info("m31");
    info["nat_type"] = json!("symmetric");
    last.send(json!({"type": "join_party", "party_id": party, "peer": info}))
        .await;
    last.expect_party_reply().await;
    for socket in rest.iter_mut().chain([&mut host]) {
        let update = socket.expect("party_update").await;
        assert_eq!(update["party"]["peers"]["m31"]["nat_type"], "symmetric");
    }

    // It leaves over its socket: one peer_left each.
    last.send(json!({"type": "leave_party", "party_id": party, "peer_id": "m31"}))
        .await;
    // Its own socket gets the event and the ack, in either order.
    let mut kinds = vec![
        last.recv().await["type"].clone(),
        last.recv().await["type"].clone(),
    ];
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(kinds, [json!("ack"), json!("peer_left")]);
    for socket in rest.iter_mut().chain([&mut host]) {
        socket.expect_left("m31").await;
    }

    // The host leaves over its socket: the party ends for everyone.
    host.send(json!({"type": "leave_party", "party_id": party, "peer_id": "alice"}))
        .await;
    for socket in rest.iter_mut() {
        assert_eq!(socket.expect("party_ended").await["reason"], "host_left");
    }
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn a_resume_too_long_to_replay_gets_the_snapshot() {
    let app = spawn_app_with(|c| c.ws_send_queue = 16).await;
    let party = app.party_of_two().await;
    for _ in 0..20 {
        app.join_with(&party.id, "bob", &party.bob).await;
    }
    let mut socket = app.ws_as("alice", &party.alice).await;

    socket.send_resume(&party.id, 1).await;

    let update = socket.expect("party_update").await;
    assert_eq!(update["seq"], 22);
    socket.send_heartbeat(&party.id, "alice").await;
    socket.expect("ack").await;
}

#[tokio::test]
async fn a_resume_racing_live_events_sends_each_seq_once_in_order() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut socket = app.ws_as("alice", &party.alice).await;

    socket.send_resume(&party.id, 0).await;
    let churn = async {
        for _ in 0..30 {
            app.join_with(&party.id, "bob", &party.bob).await;
        }
    };
    let mut seqs = Vec::new();
    let read = async {
        while seqs.last() != Some(&32) {
            let message = socket.recv().await;
            if let Some(seq) = message["seq"].as_u64() {
                seqs.push(seq);
            }
        }
    };
    tokio::join!(churn, read);

    // Live events may precede the server's handling of the resume; from
    // the replay's start on, every seq comes once, in order.
    let start = seqs.iter().position(|s| *s == 1).unwrap();
    assert!(seqs[..start].windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(seqs[start..], (1..=32).collect::<Vec<_>>());
}

#[tokio::test]
async fn shutdown_closes_unauthenticated_sockets_too() {
    let mut app = spawn_app().await;
    let mut socket = app.ws().await;

    app.stop_server().await;

    let frame = socket.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
}

#[tokio::test]
async fn socket_message_floods_are_limited() {
    let app = spawn_rate_limited_app(|c| c.ws_messages_per_sec = 2).await;
    let (_, created, mut socket) = app.host_with_socket("alice").await;

    for _ in 0..10 {
        socket
            .send_heartbeat(created.party_id.as_str(), "alice")
            .await;
    }
    let mut limited = 0;
    for _ in 0..10 {
        let reply = socket.recv().await;
        if reply["type"] == "error" {
            assert!(reply["message"].as_str().unwrap().contains("rate limit"));
            limited += 1;
        }
    }

    assert!(limited >= 4, "{limited} of 10 limited");
}
