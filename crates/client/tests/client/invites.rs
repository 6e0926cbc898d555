//! Join codes through the client: the host makes, lists and revokes them,
//! anyone previews and joins by code (then followed like a join by ID),
//! the one 404 and the 422 of a code that is not one, `invite_revoked` on
//! the socket, and what a plane without join codes answers.

use std::time::Duration;

use lanrage_client::{ControlPlane, Event, Events, INVITES_FEATURE};
use lanrage_proto::{Invite, InvitePreview, JoinPartyResponse, PartyId};
use lanrage_rules::{INVITE_NOT_FOUND, InviteCode};

use crate::helpers::{
    assert_unsupported, client, connected_plane, details, gave_up, host_party, hosting, join_as,
    next_event, peer_id, peer_ids, quitting_ws, refusal, remote_plane, spawn_server, v1_server,
};

/// The same code with other digits.
fn wrong_secret(code: &str) -> String {
    let (words, digits) = code.rsplit_once('-').unwrap();
    let other: String = digits
        .chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect();
    format!("{words}-{other}")
}

/// How a person might type `code`: lower case, a space for the dash.
fn as_typed(code: &str) -> String {
    code.to_ascii_lowercase().replace('-', " ")
}

/// Skips to `invite_revoked`; its nameplate, reason and seq.
async fn invite_revoked(events: &mut Events) -> (String, String, u64) {
    next_event(events, |e| match e {
        Event::InviteRevoked {
            nameplate,
            reason,
            seq,
            ..
        } => Some((nameplate.clone(), reason.clone(), *seq)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn the_host_makes_lists_and_revokes_codes() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let bob = client(&server.url(), "bob");
    bob.join_party(&party_id, details("bob")).await.unwrap();

    let limited: Invite = alice
        .create_invite(&party_id, Some(3), Some(Duration::from_secs(30 * 60)))
        .await
        .unwrap();
    let defaults = alice.create_invite(&party_id, None, None).await.unwrap();
    let listed = alice.invites(&party_id).await.unwrap();
    // Revoked by its nameplate as a person types it.
    alice
        .revoke_invite(&party_id, &limited.nameplate.to_ascii_uppercase())
        .await
        .unwrap();
    let after = alice.invites(&party_id).await.unwrap();
    let (again, _) = refusal(alice.revoke_invite(&party_id, &limited.nameplate).await);
    let (not_a_nameplate, not_a_nameplate_detail) =
        refusal(alice.revoke_invite(&party_id, "..").await);
    let (member_makes, _) = refusal(bob.create_invite(&party_id, None, None).await);
    let (member_lists, _) = refusal(bob.invites(&party_id).await);
    let (member_revokes, _) = refusal(bob.revoke_invite(&party_id, &defaults.nameplate).await);
    let (too_short, too_short_detail) = refusal(
        alice
            .create_invite(&party_id, None, Some(Duration::from_secs(59)))
            .await,
    );
    let (too_many, _) = refusal(alice.create_invite(&party_id, Some(101), None).await);

    assert_eq!(limited.party_id, party_id);
    assert_eq!(limited.created_by, peer_id("alice"));
    assert_eq!((limited.max_uses, limited.uses), (3, 0));
    assert_eq!(
        limited.expires_at.as_micros() - limited.created_at.as_micros(),
        1_800_000_000
    );
    assert_eq!(
        limited.code,
        InviteCode::parse(&limited.code).unwrap().reveal(),
        "shown in its canonical form"
    );
    assert!(
        limited
            .code
            .starts_with(&format!("{}-", limited.nameplate.to_ascii_uppercase())),
        "{limited:?}"
    );
    assert_eq!((defaults.max_uses, defaults.uses), (10, 0));
    assert_eq!(
        defaults.expires_at.as_micros() - defaults.created_at.as_micros(),
        3_600_000_000
    );
    assert_eq!(listed, [limited.clone(), defaults.clone()]);
    assert_eq!(after, [defaults]);
    assert_eq!(again, 404);
    assert_eq!(not_a_nameplate, 404);
    assert!(
        not_a_nameplate_detail.contains("not a nameplate"),
        "{not_a_nameplate_detail}"
    );
    assert_eq!(
        (member_makes, member_lists, member_revokes),
        (403, 403, 403)
    );
    assert_eq!(too_short, 422);
    assert!(too_short_detail.contains("ttl_secs"), "{too_short_detail}");
    assert_eq!(too_many, 422);
}

#[tokio::test]
async fn a_code_previews_its_party_and_joins_it_as_an_id_would() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let invite = alice.create_invite(&party_id, Some(2), None).await.unwrap();
    let (bob, mut events) = connected_plane(&server.url(), "bob").await;

    let preview: InvitePreview = bob.preview_invite(&as_typed(&invite.code)).await.unwrap();
    let joined: JoinPartyResponse = bob
        .join_by_code(&as_typed(&invite.code), details("bob"))
        .await
        .unwrap();
    // Followed like a party joined by ID: the next change reaches bob's
    // socket, and his heartbeat beats for it.
    join_as(&server.url(), "carol", &party_id).await;
    let carol_seq = next_event(&mut events, |e| match e {
        Event::PeerJoined { peer, seq, .. } if peer.peer_id == peer_id("carol") => Some(*seq),
        _ => None,
    })
    .await;
    // A member joining again refreshes its info without spending a use.
    let refreshed = bob
        .join_by_code(&invite.code, details("bob"))
        .await
        .unwrap();
    let listed = alice.invites(&party_id).await.unwrap();

    assert_eq!(preview.party_id, party_id);
    assert_eq!(preview.party_name, "Friday LAN");
    assert_eq!(preview.host_name, "alice's rig");
    assert_eq!(preview.members, 1);
    assert_eq!(preview.uses_left, 2);
    assert_eq!(preview.expires_at, invite.expires_at);
    assert_eq!(joined.party.party_id, party_id);
    assert_eq!(peer_ids(&joined.party.peers), ["alice", "bob"]);
    assert_eq!(joined.virtual_ip.to_string(), "10.66.0.2");
    assert_eq!(carol_seq, joined.seq + 1);
    assert_eq!(bob.http().heartbeat_party(), Some(party_id.clone()));
    assert_eq!(
        bob.socket().party().map(|view| view.party.party_id),
        Some(party_id.clone())
    );
    assert_eq!(refreshed.virtual_ip, joined.virtual_ip);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uses, 1);
    bob.close().await.unwrap();
}

#[tokio::test]
async fn codes_that_lead_nowhere_share_one_404_and_non_codes_get_a_422() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let revoked = alice.create_invite(&party_id, None, None).await.unwrap();
    alice
        .revoke_invite(&party_id, &revoked.nameplate)
        .await
        .unwrap();
    let live = alice.create_invite(&party_id, None, None).await.unwrap();
    let bob = client(&server.url(), "bob");

    let mut not_found = Vec::new();
    for code in [
        wrong_secret(&live.code),
        revoked.code.clone(),
        // The shape of a code, but not list words.
        "zzzzq 1234".to_owned(),
    ] {
        not_found.push(refusal(bob.preview_invite(&code).await));
        not_found.push(refusal(bob.join_by_code(&code, details("bob")).await));
    }
    let mut malformed = Vec::new();
    for code in ["FROG-74", "FR\u{41E}G-7421", "..", "frog/7421", ""] {
        let expected = InviteCode::parse(code).unwrap_err().to_string();
        malformed.push((refusal(bob.preview_invite(code).await), expected.clone()));
        malformed.push((
            refusal(bob.join_by_code(code, details("bob")).await),
            expected,
        ));
    }
    let members = alice.get_party(&party_id).await.unwrap().party.peers;

    for (status, detail) in &not_found {
        assert_eq!((*status, detail.as_str()), (404, INVITE_NOT_FOUND));
    }
    for ((status, detail), expected) in &malformed {
        assert_eq!(*status, 422);
        assert_eq!(detail, expected);
        assert!(detail.starts_with("invalid invite code: "), "{detail}");
    }
    assert_eq!(peer_ids(&members), ["alice"]);
}

#[tokio::test]
async fn members_hear_on_their_socket_when_a_code_ends_early() {
    let server = spawn_server().await;
    let (alice, mut events) = connected_plane(&server.url(), "alice").await;
    let party_id = host_party(&alice).await;
    let revoked = alice.create_invite(&party_id, None, None).await.unwrap();
    let guessed = alice.create_invite(&party_id, None, None).await.unwrap();
    let mallory = client(&server.url(), "mallory");

    alice
        .revoke_invite(&party_id, &revoked.nameplate)
        .await
        .unwrap();
    let by_host = invite_revoked(&mut events).await;
    // Three wrong secrets (the server's default budget) end the invite.
    for _ in 0..3 {
        let (status, _) = refusal(mallory.preview_invite(&wrong_secret(&guessed.code)).await);
        assert_eq!(status, 404);
    }
    let by_guessing = invite_revoked(&mut events).await;
    let (right_code_now, _) = refusal(mallory.preview_invite(&guessed.code).await);

    assert_eq!(
        (by_host.0.as_str(), by_host.1.as_str()),
        (revoked.nameplate.as_str(), "host")
    );
    assert_eq!(
        (by_guessing.0.as_str(), by_guessing.1.as_str()),
        (guessed.nameplate.as_str(), "guessing")
    );
    assert!(by_guessing.2 > by_host.2);
    assert_eq!(right_code_now, 404);
    assert!(alice.invites(&party_id).await.unwrap().is_empty());
    assert_eq!(
        alice.socket().party().map(|view| view.seq),
        Some(by_guessing.2),
        "the socket's view follows the invite events"
    );
    alice.close().await.unwrap();
}

#[tokio::test]
async fn a_server_without_join_codes_is_told_apart_before_anything_is_sent() {
    let (url, seen) = v1_server().await;
    let bob = client(&url, "bob");
    let party_id = PartyId::parse("0123456789abcdef").unwrap();

    let errors = [
        bob.create_invite(&party_id, Some(2), None)
            .await
            .unwrap_err(),
        bob.invites(&party_id).await.unwrap_err(),
        bob.revoke_invite(&party_id, "frog").await.unwrap_err(),
        bob.preview_invite("FROG-7421").await.unwrap_err(),
        bob.join_by_code("FROG-7421", details("bob"))
            .await
            .unwrap_err(),
    ];
    // Not a code at all: refused as the server would, with nothing sent.
    let (malformed, _) = refusal(bob.join_by_code("FROG-74", details("bob")).await);

    for error in &errors {
        assert_unsupported(error, INVITES_FEATURE, &url);
    }
    assert_eq!(malformed, 422);
    // `GET /` once, remembered; no join was attempted.
    assert_eq!(*seen.lock(), ["GET / HTTP/1.1"]);
}

#[tokio::test]
async fn a_plane_that_fell_back_to_local_has_no_join_codes() {
    let mut server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let code = alice
        .create_invite(&party_id, None, None)
        .await
        .unwrap()
        .code;
    let (bob, mut events) = remote_plane(&server.url(), "bob", quitting_ws()).await;

    server.stop().await;
    gave_up(&mut events).await;
    let errors = [
        bob.preview_invite(&code).await.unwrap_err(),
        bob.join_by_code(&code, details("bob")).await.unwrap_err(),
        bob.create_invite(&party_id, None, None).await.unwrap_err(),
        bob.invites(&party_id).await.unwrap_err(),
        bob.revoke_invite(&party_id, "frog").await.unwrap_err(),
    ];

    for error in &errors {
        assert_unsupported(error, INVITES_FEATURE, "local");
    }
    assert!(bob.is_local());
    bob.close().await.unwrap();
}
