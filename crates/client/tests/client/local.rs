//! The local plane on real files: write-behind batching, atomic versioned
//! state files, corrupt-file recovery, discovery between instances under
//! concurrent writers, and its own stale-peer cleanup.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use lanrage_client::{ControlPlane, LeaveOutcome, LocalConfig, LocalControlPlane};
use lanrage_proto::{Party, PartyId, PartyResponse, SignalData, Timestamp};
use serde_json::{Value, json};

use crate::helpers::{create_party, details, eventually, host_party, name, peer_id, peer_info};

/// A local plane for `id` that keeps its state in memory only.
async fn in_memory(id: &str) -> LocalControlPlane {
    LocalControlPlane::open(LocalConfig::new(peer_id(id)))
        .await
        .unwrap()
}

fn state_config(dir: &Path, id: &str) -> LocalConfig {
    let mut config = LocalConfig::new(peer_id(id));
    config.state_file = Some(dir.join("state.json"));
    config
}

#[tokio::test]
async fn a_burst_of_changes_is_one_atomic_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = state_config(dir.path(), "alice");
    config.write_delay = Duration::from_millis(500);
    let plane = LocalControlPlane::open(config).await.unwrap();

    let party_id = host_party(&plane).await;
    for _ in 0..20 {
        plane.heartbeat(&party_id).await.unwrap();
    }

    eventually("the state file is written", || async {
        (plane.state_writes() >= 1).then_some(())
    })
    .await;
    // Well past another write window: nothing more to write.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(plane.state_writes(), 1);
    let saved: Value =
        serde_json::from_slice(&fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(saved["version"], "1");
    assert_eq!(saved["parties"][0]["party"]["party_id"], party_id.as_str());
    // Only the file itself: the temporary was renamed over it.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["state.json"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    plane.close().await.unwrap();
}

#[tokio::test]
async fn state_is_loaded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalControlPlane::open(state_config(dir.path(), "alice"))
        .await
        .unwrap();
    let created = create_party(&first).await;
    first.close().await.unwrap();

    let second = LocalControlPlane::open(state_config(dir.path(), "alice"))
        .await
        .unwrap();
    let view = second.get_party(&created.party.party_id).await.unwrap();

    assert_eq!(view.party, created.party);
    assert_eq!(view.virtual_ips[&peer_id("alice")].to_string(), "10.66.0.1");
    assert!(second.set_aside_files().is_empty());
}

#[tokio::test]
async fn a_plane_dropped_without_close_still_saves() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = state_config(dir.path(), "alice");
    config.write_delay = Duration::from_secs(3600);
    let plane = LocalControlPlane::open(config).await.unwrap();
    let created = create_party(&plane).await;

    drop(plane);

    // The drop's write runs on the blocking pool, not on this task.
    let state = dir.path().join("state.json");
    let party_id = created.party.party_id.to_string();
    eventually("the dropped plane's state is written", || async {
        fs::read_to_string(&state)
            .ok()
            .filter(|text| text.contains(&party_id))
            .map(|_| ())
    })
    .await;
    let reopened = LocalControlPlane::open(state_config(dir.path(), "alice"))
        .await
        .unwrap();
    assert!(reopened.get_party(&created.party.party_id).await.is_ok());
}

#[tokio::test]
async fn a_corrupt_state_file_is_set_aside_and_reported() {
    for garbage in [
        "{\"version\": \"1\", \"parties\": [tru",
        "{\"version\": \"99\"}",
        "",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, garbage).unwrap();

        let plane = LocalControlPlane::open(state_config(dir.path(), "alice"))
            .await
            .unwrap();

        let found = plane.set_aside_files();
        assert_eq!(found.len(), 1, "{garbage:?}");
        assert_eq!(found[0].path, path);
        assert_eq!(fs::read_to_string(&found[0].moved_to).unwrap(), garbage);
        assert!(!found[0].error.is_empty());
        assert!(plane.discover_parties().await.unwrap().is_empty());
        // And the plane works on: a fresh file replaces the bad one.
        plane
            .register_party(name("Fresh start"), details("alice"))
            .await
            .unwrap();
        plane.close().await.unwrap();
        let saved: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["parties"][0]["party"]["name"], "Fresh start");
    }
}

#[tokio::test]
async fn same_rules_as_the_server() {
    let alice = in_memory("alice").await;
    let first = alice
        .register_party(name("One"), details("alice"))
        .await
        .unwrap();

    let second = alice
        .register_party(name("Two"), details("alice"))
        .await
        .unwrap();
    let first_gone = alice.get_party(&first.party.party_id).await;

    // A peer is in one party at most: the host moving on ended the first.
    assert_eq!(first_gone.unwrap_err().status(), Some(404));
    assert_eq!(
        alice.leave_party(&second.party.party_id).await.unwrap(),
        LeaveOutcome::PartyDeleted
    );
    assert!(alice.list_relays().await.unwrap().is_empty());
}

/// A party holding every address of 10.66.0.0/16, as a server would
/// describe it.
fn full_party() -> PartyResponse {
    let now = Timestamp::now();
    let mut peers = BTreeMap::new();
    let mut virtual_ips = BTreeMap::new();
    for index in 1..=u16::MAX - 1 {
        let id = format!("m{index}");
        peers.insert(peer_id(&id), peer_info(&id).into_peer(now));
        let [high, low] = index.to_be_bytes();
        virtual_ips.insert(peer_id(&id), std::net::Ipv4Addr::new(10, 66, high, low));
    }
    PartyResponse {
        party: Party {
            party_id: PartyId::parse("crowded").unwrap(),
            name: name("Crowded"),
            host_id: peer_id("m1"),
            created_at: now,
            peers,
        },
        virtual_ips,
        seq: 70_000,
        extras: Default::default(),
    }
}

#[tokio::test]
async fn a_full_party_refuses_a_peer_without_moving_it() {
    let alice = in_memory("alice").await;
    let own = alice
        .register_party(name("Mine"), details("alice"))
        .await
        .unwrap();
    let full = full_party();
    let full_id = full.party.party_id.clone();
    alice.adopt_party(full).await.unwrap();

    let refused = alice.join_party(&full_id, details("alice")).await;
    let still_mine = alice.get_party(&own.party.party_id).await;

    let error = refused.unwrap_err();
    assert_eq!(error.status(), Some(409));
    assert_eq!(error.detail(), Some("party crowded is full"));
    // Nothing changed: alice still hosts her party, at the same address.
    let still_mine = still_mine.unwrap();
    assert_eq!(still_mine.party.host_id, peer_id("alice"));
    assert_eq!(still_mine.seq, own.seq);
    assert_eq!(
        still_mine.virtual_ips[&peer_id("alice")].to_string(),
        "10.66.0.1"
    );
    assert_eq!(alice.heartbeat_party(), Some(own.party.party_id.clone()));
    alice.close().await.unwrap();
}

#[tokio::test]
async fn two_instances_find_each_other_through_the_discovery_file() {
    let dir = tempfile::tempdir().unwrap();
    let alice = LocalControlPlane::open(LocalConfig::in_dir(peer_id("alice"), dir.path()))
        .await
        .unwrap();
    let bob = LocalControlPlane::open(LocalConfig::in_dir(peer_id("bob"), dir.path()))
        .await
        .unwrap();

    let party_id = host_party(&alice).await;
    let seen_by_bob = bob.discover_parties().await.unwrap();
    let joined = bob.join_party(&party_id, details("bob")).await.unwrap();
    let alices_view = alice.get_peers(&party_id).await.unwrap();
    let offer = SignalData::parse(json!({"type": "offer", "port": 51820})).unwrap();
    alice
        .send_signal(&party_id, &peer_id("bob"), offer.clone())
        .await
        .unwrap();
    let signals = bob.poll_signals(&party_id).await.unwrap();
    let left = bob.leave_party(&party_id).await.unwrap();
    let after = alice.get_party(&party_id).await.unwrap();

    assert_eq!(seen_by_bob.len(), 1);
    assert_eq!(seen_by_bob[0].party.host_id, peer_id("alice"));
    assert_eq!(joined.virtual_ip.to_string(), "10.66.0.2");
    assert!(alices_view.contains_key(&peer_id("bob")));
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].signal_data, offer);
    assert_eq!(left, LeaveOutcome::Left);
    assert_eq!(after.party.peers.len(), 1);
    assert_eq!(after.seq, 3);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalControlPlane::open(LocalConfig::in_dir(peer_id("host"), dir.path()))
        .await
        .unwrap();
    let created = host
        .register_party(name("Crowd"), details("host"))
        .await
        .unwrap();
    let party_id = created.party.party_id.clone();

    let mut joins = Vec::new();
    for n in 0..12 {
        let dir = dir.path().to_path_buf();
        let party_id = party_id.clone();
        joins.push(tokio::spawn(async move {
            let id = format!("guest-{n}");
            let plane = LocalControlPlane::open(LocalConfig::in_dir(peer_id(&id), &dir))
                .await
                .unwrap();
            let joined = plane.join_party(&party_id, details(&id)).await.unwrap();
            plane.heartbeat(&party_id).await.unwrap();
            plane.close().await.unwrap();
            joined.virtual_ip
        }));
    }
    let mut ips = Vec::new();
    for join in joins {
        ips.push(join.await.unwrap());
    }

    let view = host.get_party(&party_id).await.unwrap();
    assert_eq!(view.party.peers.len(), 13);
    assert_eq!(view.seq, 13);
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 12, "every guest got its own virtual IP");
}

#[tokio::test]
async fn stale_peers_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let fast = |id: &str| {
        let mut config = LocalConfig::in_dir(peer_id(id), dir.path());
        config.peer_timeout = Duration::from_secs(1);
        config.cleanup_interval = Duration::from_millis(200);
        config
    };
    let alice = LocalControlPlane::open(fast("alice")).await.unwrap();
    let bob = LocalControlPlane::open(fast("bob")).await.unwrap();
    let party_id = host_party(&alice).await;
    bob.join_party(&party_id, details("bob")).await.unwrap();
    bob.close().await.unwrap();

    // Alice keeps beating; bob went silent and is removed by the cleanup.
    let view = eventually("bob is cleaned up", || async {
        alice.heartbeat(&party_id).await.unwrap();
        let view = alice.get_party(&party_id).await.unwrap();
        (!view.party.peers.contains_key(&peer_id("bob"))).then_some(view)
    })
    .await;

    assert!(view.party.peers.contains_key(&peer_id("alice")));
    alice.close().await.unwrap();
}

#[tokio::test]
async fn the_host_keeps_itself_alive_until_it_leaves() {
    let mut config = LocalConfig::new(peer_id("alice"));
    config.peer_timeout = Duration::from_secs(2);
    config.cleanup_interval = Duration::from_millis(100);
    let plane = LocalControlPlane::open(config).await.unwrap();
    let created = create_party(&plane).await;
    let party_id = created.party.party_id.clone();

    // Well past the peer timeout, counted in heartbeats (one per third of it).
    eventually("four heartbeats", || async {
        (plane.heartbeats_sent() >= 4).then_some(())
    })
    .await;
    let view = plane.get_party(&party_id).await.unwrap();
    assert!(view.party.peers[&peer_id("alice")].last_seen > created.party.created_at);
    assert_eq!(plane.heartbeat_party(), Some(party_id.clone()));

    plane.leave_party(&party_id).await.unwrap();
    assert_eq!(plane.heartbeat_party(), None);
    let rejoined = plane
        .register_party(name("Saturday LAN"), details("alice"))
        .await
        .unwrap();
    assert_eq!(plane.heartbeat_party(), Some(rejoined.party.party_id));
    plane.close().await.unwrap();
    assert_eq!(plane.heartbeat_party(), None);
}

#[test]
fn the_heartbeat_is_never_slower_than_a_third_of_the_peer_timeout() {
    let mut config = LocalConfig::new(peer_id("alice"));
    assert_eq!(
        config.effective_heartbeat_interval(),
        Duration::from_secs(30)
    );
    config.peer_timeout = Duration::from_secs(3);
    assert_eq!(
        config.effective_heartbeat_interval(),
        Duration::from_secs(1)
    );
}
