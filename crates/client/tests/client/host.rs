//! Host authority through the client: settings, handing the party over
//! with epoch fencing, removing members, a migrating party followed by the
//! socket, and what a plane without host authority answers.

use lanrage_client::{ControlPlane, Event, Events, HOST_MIGRATION_FEATURE, LeaveOutcome, WsConfig};
use lanrage_proto::{
    HostPolicy, JoinPolicy, PartyId, PartySettings, SettingsPatch, SettingsResponse,
    TransferHostResponse,
};

use crate::helpers::{
    assert_unsupported, client, connected_plane, details, eventually, gave_up, hosting, join_as,
    name, next_event, peer_id, peer_ids, quitting_ws, refusal, remote_plane, spawn_server,
    v1_server,
};

fn migrate() -> SettingsPatch {
    SettingsPatch {
        host_policy: Some(HostPolicy::Migrate),
        ..SettingsPatch::default()
    }
}

#[tokio::test]
async fn the_host_hands_over_and_refusals_carry_the_servers_status() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let bob = client(&server.url(), "bob");
    bob.join_party(&party_id, details("bob")).await.unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    let before = alice.get_party(&party_id).await.unwrap();

    let done: TransferHostResponse = alice
        .transfer_host(&party_id, &peer_id("bob"), before.extras.host_epoch)
        .await
        .unwrap();

    assert_eq!(before.extras.host_epoch, Some(1));
    assert_eq!(done.party.host_id, peer_id("bob"));
    assert_eq!(done.host_epoch, 2);
    let read = bob.get_party(&party_id).await.unwrap();
    assert_eq!(read.party.host_id, peer_id("bob"));
    assert_eq!(read.extras.host_epoch, Some(2));
    assert_eq!(read.seq, done.seq);
    assert_eq!(peer_ids(&read.party.peers), ["alice", "bob", "carol"]);

    // The former host is an ordinary member; the new one is fenced by
    // the epoch it saw.
    let (not_host, _) = refusal(
        alice
            .transfer_host(&party_id, &peer_id("carol"), None)
            .await,
    );
    let (stale, stale_detail) = refusal(
        bob.transfer_host(&party_id, &peer_id("carol"), Some(1))
            .await,
    );
    let (no_member, _) = refusal(bob.transfer_host(&party_id, &peer_id("zed"), None).await);
    let (itself, _) = refusal(bob.transfer_host(&party_id, &peer_id("bob"), None).await);
    let unknown = PartyId::parse("0123456789abcdef").unwrap();
    let (gone, _) = refusal(bob.transfer_host(&unknown, &peer_id("carol"), None).await);

    assert_eq!(not_host, 403);
    assert_eq!(stale, 409);
    assert!(!stale_detail.is_empty());
    assert_eq!(no_member, 404);
    assert_eq!(itself, 422);
    assert_eq!(gone, 404);
    let error = bob
        .transfer_host(&party_id, &peer_id("carol"), Some(1))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(409));
    assert!(error.to_string().contains("(409)"), "{error}");
    assert_eq!(
        bob.get_party(&party_id).await.unwrap().extras.host_epoch,
        Some(2),
        "refusals changed nothing"
    );
}

#[tokio::test]
async fn the_host_removes_members_with_and_without_a_ban() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let bob = client(&server.url(), "bob");
    let carol = client(&server.url(), "carol");
    bob.join_party(&party_id, details("bob")).await.unwrap();
    carol.join_party(&party_id, details("carol")).await.unwrap();

    let kicked = alice.kick(&party_id, &peer_id("bob"), false).await.unwrap();
    let gone = alice.get_party(&party_id).await.unwrap();
    // Without a ban, bob may come back.
    bob.join_party(&party_id, details("bob")).await.unwrap();
    let banned = alice.kick(&party_id, &peer_id("bob"), true).await.unwrap();
    let (rejoin, rejoin_detail) = refusal(bob.join_party(&party_id, details("bob")).await);
    let (not_host, _) = refusal(carol.kick(&party_id, &peer_id("alice"), false).await);
    let (itself, _) = refusal(alice.kick(&party_id, &peer_id("alice"), false).await);
    let (no_member, _) = refusal(alice.kick(&party_id, &peer_id("zed"), true).await);

    assert_eq!((kicked.status.as_str(), kicked.banned), ("removed", false));
    assert_eq!(peer_ids(&gone.party.peers), ["alice", "carol"]);
    assert_eq!(gone.seq, kicked.seq);
    assert_eq!((banned.status.as_str(), banned.banned), ("removed", true));
    assert_eq!(rejoin, 403);
    assert!(rejoin_detail.contains("banned"), "{rejoin_detail}");
    assert_eq!(not_host, 403);
    assert_eq!(itself, 422);
    assert_eq!(no_member, 404);
}

#[tokio::test]
async fn members_read_the_settings_and_the_host_changes_them() {
    let server = spawn_server().await;
    let alice = client(&server.url(), "alice");
    let bob = client(&server.url(), "bob");
    let created = alice
        .register_party_with_settings(
            name("Friday LAN"),
            details("alice"),
            SettingsPatch {
                max_members: Some(Some(4)),
                ..migrate()
            },
        )
        .await
        .unwrap();
    let party_id = created.party.party_id.clone();
    bob.join_party(&party_id, details("bob")).await.unwrap();

    let read: SettingsResponse = bob.party_settings(&party_id).await.unwrap();
    let (member_patch, _) = refusal(
        bob.update_party_settings(&party_id, SettingsPatch::default())
            .await,
    );
    let changed = alice
        .update_party_settings(
            &party_id,
            SettingsPatch {
                join_policy: Some(JoinPolicy::Invite),
                max_members: Some(None),
                ..SettingsPatch::default()
            },
        )
        .await
        .unwrap();
    let (out_of_range, _) = refusal(
        alice
            .update_party_settings(
                &party_id,
                SettingsPatch {
                    max_members: Some(Some(1)),
                    ..SettingsPatch::default()
                },
            )
            .await,
    );
    let reread = bob.party_settings(&party_id).await.unwrap();
    let (outsider, _) = refusal(client(&server.url(), "eve").party_settings(&party_id).await);

    let expected = PartySettings {
        host_policy: HostPolicy::Migrate,
        join_policy: JoinPolicy::Open,
        max_members: Some(4),
    };
    assert_eq!(created.extras.settings, Some(expected));
    assert_eq!(read.party_id, party_id);
    assert_eq!(read.settings, expected);
    assert_eq!(member_patch, 403);
    assert_eq!(
        changed.settings,
        PartySettings {
            join_policy: JoinPolicy::Invite,
            max_members: None,
            ..expected
        }
    );
    assert!(changed.seq > read.seq);
    assert_eq!(out_of_range, 422);
    assert_eq!(reread, changed, "the refusal changed nothing");
    assert_eq!(outsider, 403);
}

/// The party events among what `events` gives until `until` accepts one.
async fn party_events_until(events: &mut Events, until: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    next_event(events, |event| {
        let party_event = matches!(
            event,
            Event::PeerJoined { .. }
                | Event::PeerLeft { .. }
                | Event::HostChanged { .. }
                | Event::SettingsChanged { .. }
                | Event::PartyUpdated { .. }
                | Event::PartyEnded { .. }
        );
        if party_event {
            seen.push(event.clone());
        }
        until(event).then_some(())
    })
    .await;
    seen
}

#[tokio::test]
async fn the_socket_follows_a_migrating_party_past_its_host() {
    let server = spawn_server().await;
    let alice = client(&server.url(), "alice");
    let party_id = alice
        .register_party_with_settings(name("Friday LAN"), details("alice"), migrate())
        .await
        .unwrap()
        .party
        .party_id;
    let (bob, mut events) = connected_plane(&server.url(), "bob").await;
    let joined = bob.join_party(&party_id, details("bob")).await.unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    next_event(&mut events, |e| {
        matches!(e, Event::PeerJoined { peer, .. } if peer.peer_id == peer_id("carol"))
            .then_some(())
    })
    .await;

    let left = alice.leave_party(&party_id).await.unwrap();
    let seen = party_events_until(
        &mut events,
        |e| matches!(e, Event::PartyUpdated { party, .. } if party.host_id == peer_id("bob")),
    )
    .await;

    assert_eq!(left, LeaveOutcome::Left, "the party lives on");
    assert_eq!(joined.extras.host_epoch, Some(1));
    let [
        Event::PeerLeft {
            peer_id: gone,
            reason,
            seq: left_seq,
            ..
        },
        Event::HostChanged {
            old_host_id,
            new_host_id,
            reason: why,
            host_epoch,
            seq: changed_seq,
            ..
        },
        Event::PartyUpdated {
            party,
            seq: update_seq,
            ..
        },
    ] = seen.as_slice()
    else {
        panic!("expected peer_left, host_changed, party_update; saw {seen:#?}");
    };
    assert_eq!(gone, &peer_id("alice"));
    assert_eq!(reason.as_deref(), Some("left"));
    assert_eq!(
        (old_host_id, new_host_id),
        (&peer_id("alice"), &peer_id("bob"))
    );
    assert_eq!(why, "left");
    assert_eq!(*host_epoch, 2);
    assert_eq!([*left_seq, *changed_seq, *update_seq], [4, 5, 6]);
    assert_eq!(peer_ids(&party.peers), ["bob", "carol"]);
    let view = bob.socket().party().unwrap();
    assert_eq!(view.party.host_id, peer_id("bob"));
    assert_eq!(view.extras.host_epoch, Some(2));
    assert_eq!(view.seq, 6);
    assert_eq!(
        view.extras.settings.map(|s| s.host_policy),
        Some(HostPolicy::Migrate)
    );
    assert_eq!(bob.get_party(&party_id).await.unwrap().party, view.party);

    // The new host acts through the remote plane; its view follows.
    let handed = bob
        .transfer_host(&party_id, &peer_id("carol"), view.extras.host_epoch)
        .await
        .unwrap();
    let seen = party_events_until(
        &mut events,
        |e| matches!(e, Event::PartyUpdated { seq, .. } if *seq == handed.seq),
    )
    .await;
    assert!(
        matches!(&seen[..], [Event::HostChanged { reason, host_epoch: 3, .. }, Event::PartyUpdated { .. }] if reason == "transferred"),
        "{seen:#?}"
    );
    let view = bob.socket().party().unwrap();
    assert_eq!(view.party.host_id, peer_id("carol"));
    assert_eq!(view.extras.host_epoch, Some(3));
    bob.close().await.unwrap();
}

#[tokio::test]
async fn the_removed_peer_hears_why_on_its_socket() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let (bob, mut events) = connected_plane(&server.url(), "bob").await;
    bob.join_party(&party_id, details("bob")).await.unwrap();

    let kicked = alice.kick(&party_id, &peer_id("bob"), false).await.unwrap();
    let (reason, seq) = next_event(&mut events, |e| match e {
        Event::PeerLeft {
            peer_id: gone,
            reason,
            seq,
            ..
        } if *gone == peer_id("bob") => Some((reason.clone(), *seq)),
        _ => None,
    })
    .await;

    assert_eq!(reason.as_deref(), Some("kicked"));
    assert_eq!(seq, kicked.seq);
    assert!(bob.socket().party().is_none(), "no longer followed");
    bob.close().await.unwrap();
}

#[tokio::test]
async fn a_plane_that_fell_back_to_local_has_no_host_authority() {
    let mut server = spawn_server().await;
    let (alice, mut events) = remote_plane(&server.url(), "alice", quitting_ws()).await;
    let party_id = alice
        .register_party_with_settings(name("Friday LAN"), details("alice"), migrate())
        .await
        .unwrap()
        .party
        .party_id;
    join_as(&server.url(), "bob", &party_id).await;

    server.stop().await;
    gave_up(&mut events).await;
    let transfer = alice
        .transfer_host(&party_id, &peer_id("bob"), None)
        .await
        .unwrap_err();
    let kick = alice
        .kick(&party_id, &peer_id("bob"), false)
        .await
        .unwrap_err();
    let settings = alice.party_settings(&party_id).await.unwrap_err();
    let create = alice
        .register_party_with_settings(name("Saturday LAN"), details("alice"), migrate())
        .await
        .unwrap_err();
    // Default settings need no host authority: the local plane creates it.
    let local = alice
        .register_party_with_settings(
            name("Saturday LAN"),
            details("alice"),
            SettingsPatch::default(),
        )
        .await
        .unwrap();

    for error in [transfer, kick, settings, create] {
        assert_unsupported(&error, HOST_MIGRATION_FEATURE, "local");
    }
    assert_eq!(local.party.host_id, peer_id("alice"));
    assert!(alice.is_local());
    alice.close().await.unwrap();
}

#[tokio::test]
async fn a_server_without_host_authority_is_told_apart_before_anything_is_sent() {
    let (url, seen) = v1_server().await;
    let alice = client(&url, "alice");
    let party_id = PartyId::parse("0123456789abcdef").unwrap();

    let create = alice
        .register_party_with_settings(name("Friday LAN"), details("alice"), migrate())
        .await
        .unwrap_err();
    let transfer = alice
        .transfer_host(&party_id, &peer_id("bob"), Some(1))
        .await
        .unwrap_err();
    let settings = alice.party_settings(&party_id).await.unwrap_err();

    for error in [create, transfer, settings] {
        assert_unsupported(&error, HOST_MIGRATION_FEATURE, &url);
    }
    // `GET /` once, remembered; no party was created without its settings.
    assert_eq!(*seen.lock(), ["GET / HTTP/1.1"]);
}

#[tokio::test]
async fn a_party_created_with_settings_is_followed_with_them() {
    let server = spawn_server().await;
    let (alice, _events) = remote_plane(&server.url(), "alice", WsConfig::default()).await;

    let created = alice
        .register_party_with_settings(name("Friday LAN"), details("alice"), migrate())
        .await
        .unwrap();
    let read = alice.party_settings(&created.party.party_id).await.unwrap();
    let followed = eventually("the socket follows the new party", || async {
        alice.socket().party().and_then(|view| view.extras.settings)
    })
    .await;

    assert_eq!(read.settings.host_policy, HostPolicy::Migrate);
    assert_eq!(created.extras.settings, Some(read.settings));
    assert_eq!(followed, read.settings);
    alice.close().await.unwrap();
}
