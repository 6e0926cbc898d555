//! Join codes (DESIGN, "Capabilities beyond v1", section 3): making,
//! listing, revoking, previewing and redeeming codes, the one 404, the
//! guessing defences, and the socket's `join_by_code`.

use std::collections::HashSet;

use lanrage_proto::{
    ErrorBody, InvitePreview, InviteResponse, InvitesResponse, JoinPartyResponse, ServiceInfo,
};
use lanrage_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    PartyOfTwo, Route, TestApp, install_tls_provider, join_body, peer_info, spawn_app,
    spawn_app_with,
};

const NOT_FOUND: &str = "invite code not found or no longer valid";

impl TestApp {
    /// `POST /parties/{party}/invites` as `token`.
    async fn make_invite(
        &self,
        party: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("/parties/{party}/invites"),
            Some(token),
            body,
        )
        .await
    }

    /// The host `token` makes an invite with `body`, which must succeed.
    async fn invite(&self, party: &str, token: &str, body: Value) -> lanrage_proto::Invite {
        let response = self.make_invite(party, token, Some(body)).await;
        crate::helpers::read::<InviteResponse>(response, StatusCode::CREATED, "make an invite")
            .await
            .invite
    }

    /// `POST /invites/{code}/join` as `peer` (its token), describing itself.
    async fn redeem(&self, code: &str, peer: &str, token: &str) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("/invites/{}/join", encode(code)),
            Some(token),
            Some(json!({"peer_info": peer_info(peer)})),
        )
        .await
    }

    /// `GET /parties/{party}/invites` as `token`, which must succeed.
    async fn list_invites(&self, party: &str, token: &str) -> InvitesResponse {
        self.expect(
            Method::GET,
            &format!("/parties/{party}/invites"),
            Some(token),
            None,
            StatusCode::OK,
        )
        .await
    }

    async fn preview(&self, code: &str, token: &str) -> reqwest::Response {
        self.send(
            Method::GET,
            &format!("/invites/{}", encode(code)),
            Some(token),
            None,
        )
        .await
    }
}

/// `code` as a path segment (spaces and the like typed by people).
fn encode(code: &str) -> String {
    code.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn detail_of(response: reqwest::Response, status: StatusCode) -> String {
    crate::helpers::read::<ErrorBody>(response, status, "a refusal")
        .await
        .detail
}

/// The same code with the wrong digits.
fn wrong_secret(code: &str) -> String {
    let (word, digits) = code.rsplit_once('-').unwrap();
    let wrong: String = digits
        .chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect();
    format!("{word}-{wrong}")
}

#[tokio::test]
async fn the_server_announces_invites() {
    let app = spawn_app().await;
    let info: ServiceInfo = app
        .expect(Method::GET, "/", None, None, StatusCode::OK)
        .await;
    assert!(info.has_feature("invites"), "{:?}", info.features);
}

#[tokio::test]
async fn the_host_makes_codes_with_defaults_or_its_own_limits() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;

    let invite = app.invite(&party.id, &party.alice, json!({})).await;
    assert_eq!((invite.max_uses, invite.uses), (10, 0));
    let lifetime = invite.expires_at.as_micros() - invite.created_at.as_micros();
    assert_eq!(lifetime, 3_600_000_000);
    assert_eq!(invite.created_by.as_str(), "alice");
    let (word, digits) = invite.code.rsplit_once('-').unwrap();
    assert_eq!(word, invite.nameplate.to_ascii_uppercase());
    assert!(
        digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        invite.code
    );
    assert!(
        lanrage_rules::invite_code::is_nameplate_word(&invite.nameplate),
        "{}",
        invite.nameplate
    );

    let custom = app
        .invite(
            &party.id,
            &party.alice,
            json!({"max_uses": 1, "ttl_secs": 60}),
        )
        .await;
    assert_eq!(custom.max_uses, 1);
    assert_eq!(
        custom.expires_at.as_micros() - custom.created_at.as_micros(),
        60_000_000
    );
    // No body at all takes the defaults too.
    let response = app.make_invite(&party.id, &party.alice, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    for bad in [
        json!({"max_uses": 0}),
        json!({"max_uses": 101}),
        json!({"ttl_secs": 59}),
        json!({"ttl_secs": 604_801}),
        json!({"max_uses": "3"}),
    ] {
        let response = app
            .make_invite(&party.id, &party.alice, Some(bad.clone()))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let response = app
        .make_invite(&party.id, &party.bob, Some(json!({})))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "members are not hosts"
    );
    let outsider = app.register("eve").await;
    let response = app.make_invite(&party.id, &outsider, Some(json!({}))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_party_holds_at_most_twenty_live_codes_each_its_own_nameplate() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let mut nameplates = HashSet::new();
    for _ in 0..20 {
        nameplates.insert(app.invite(&party, &alice, json!({})).await.nameplate);
    }
    assert_eq!(nameplates.len(), 20, "unique among live invites");
    let response = app.make_invite(&party, &alice, Some(json!({}))).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);

    let listed = app.list_invites(&party, &alice).await;
    assert_eq!(listed.invites.len(), 20);
    let first = &listed.invites[0].nameplate;
    let revoked: Value = app
        .expect(
            Method::DELETE,
            &format!("/parties/{party}/invites/{first}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(revoked, json!({"status": "revoked"}));
    let response = app.make_invite(&party, &alice, Some(json!({}))).await;
    assert_eq!(response.status(), StatusCode::CREATED, "room again");
}

#[tokio::test]
async fn anyone_with_a_token_previews_and_joins_by_code_as_by_id() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut host = app.ws_as("alice", &party.alice).await;
    let invite = app
        .invite(&party.id, &party.alice, json!({"max_uses": 2}))
        .await;
    let carol = app.register("carol").await;

    let preview: InvitePreview = crate::helpers::read(
        app.preview(&invite.code, &carol).await,
        StatusCode::OK,
        "preview",
    )
    .await;
    assert_eq!(preview.party_id.as_str(), party.id);
    assert_eq!(preview.party_name, "Friday LAN");
    assert_eq!(preview.host_name, "alice's rig");
    assert_eq!((preview.members, preview.uses_left), (2, 2));

    let joined: JoinPartyResponse = crate::helpers::read(
        app.redeem(&invite.code, "carol", &carol).await,
        StatusCode::OK,
        "join",
    )
    .await;
    assert_eq!(joined.party.peers.len(), 3);
    assert_eq!(joined.virtual_ip.to_string(), "10.66.0.3");
    let event = host.expect_joined("carol").await;
    assert_eq!(event["seq"].as_u64(), Some(joined.seq));

    // A member redeeming again refreshes without spending a use.
    let again = app.redeem(&invite.code, "carol", &carol).await;
    assert_eq!(again.status(), StatusCode::OK);
    let listed = app.list_invites(&party.id, &party.alice).await;
    assert_eq!(listed.invites[0].uses, 1);

    // The last use ends it.
    let dave = app.register("dave").await;
    assert_eq!(
        app.redeem(&invite.code, "dave", &dave).await.status(),
        StatusCode::OK
    );
    let erin = app.register("erin").await;
    let detail = detail_of(
        app.redeem(&invite.code, "erin", &erin).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(detail, NOT_FOUND);
}

#[tokio::test]
async fn codes_are_read_as_people_type_them() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let invite = app.invite(&party, &alice, json!({"max_uses": 100})).await;
    let (word, digits) = invite.code.rsplit_once('-').unwrap();
    let lower = word.to_ascii_lowercase();
    let bob = app.register("bob").await;
    for typed in [
        invite.code.clone(),
        format!("  {lower}-{digits} "),
        format!("{lower} {digits}"),
        format!("{word}_{digits}"),
        format!("{lower}{digits}"),
    ] {
        let response = app.preview(&typed, &bob).await;
        assert_eq!(response.status(), StatusCode::OK, "{typed:?}");
    }
    for malformed in [
        format!("{word}.{digits}"),
        format!("{word}-{}", &digits[..2]),
        // A Cyrillic letter that looks like a Latin one.
        format!("\u{0410}{word}-{digits}"),
        format!("{word}-{digits}-{digits}"),
        "-".to_owned(),
    ] {
        let response = app.preview(&malformed, &bob).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{malformed:?}"
        );
    }
    // The shape of a code, but not list words: the one 404.
    let detail = detail_of(app.preview("QZXV-1234", &bob).await, StatusCode::NOT_FOUND).await;
    assert_eq!(detail, NOT_FOUND);
}

#[tokio::test]
async fn wrong_secrets_revoke_a_code_and_the_host_sees_why() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mut host = app.ws_as("alice", &party.alice).await;
    let invite = app.invite(&party.id, &party.alice, json!({})).await;
    let eve = app.register("eve").await;
    let wrong = wrong_secret(&invite.code);

    for attempt in 0..3 {
        let response = if attempt % 2 == 0 {
            app.preview(&wrong, &eve).await
        } else {
            app.redeem(&wrong, "eve", &eve).await
        };
        assert_eq!(detail_of(response, StatusCode::NOT_FOUND).await, NOT_FOUND);
    }
    let revoked = host.expect("invite_revoked").await;
    assert_eq!(revoked["nameplate"], invite.nameplate.as_str());
    assert_eq!(revoked["reason"], "guessing");

    // Even the right secret leads nowhere now, with the same answer.
    let carol = app.register("carol").await;
    let detail = detail_of(
        app.redeem(&invite.code, "carol", &carol).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(detail, NOT_FOUND);
    assert_eq!(
        app.read_party(&party.id, &party.alice)
            .await
            .party
            .peers
            .len(),
        2
    );
}

#[tokio::test]
async fn a_revoked_code_and_the_code_of_an_ended_party_lead_nowhere() {
    let app = spawn_app().await;
    let PartyOfTwo { id, alice, bob, .. } = app.party_of_two().await;
    let mut guest = app.ws_as("bob", &bob).await;
    let revoked = app.invite(&id, &alice, json!({})).await;
    let response = app
        .send(
            Method::DELETE,
            &format!("/parties/{id}/invites/{}", revoked.nameplate),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = guest.expect("invite_revoked").await;
    assert_eq!(event["reason"], "host");
    let response = app
        .send(
            Method::DELETE,
            &format!("/parties/{id}/invites/{}", revoked.nameplate),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "revoked already");
    let carol = app.register("carol").await;
    let detail = detail_of(
        app.redeem(&revoked.code, "carol", &carol).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(detail, NOT_FOUND);

    let live = app.invite(&id, &alice, json!({})).await;
    app.leave(&id, "alice", &alice).await;
    let detail = detail_of(app.preview(&live.code, &carol).await, StatusCode::NOT_FOUND).await;
    assert_eq!(detail, NOT_FOUND);
}

#[tokio::test]
async fn the_party_rules_hold_by_code_and_refusals_spend_no_use() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let invite = app
        .invite(&party.id, &party.alice, json!({"max_uses": 5}))
        .await;
    let settings = format!("/parties/{}/settings", party.id);
    let patch = |body: Value| app.send(Method::PATCH, &settings, Some(&party.alice), Some(body));
    // Invite-only: by ID refused, by code welcome.
    assert_eq!(
        patch(json!({"join_policy": "invite"})).await.status(),
        StatusCode::OK
    );
    let carol = app.register("carol").await;
    let by_id = join_body(&party.id, peer_info("carol"));
    app.refused(Route::Join(&party.id, by_id), &carol, StatusCode::FORBIDDEN)
        .await;
    assert_eq!(
        app.redeem(&invite.code, "carol", &carol).await.status(),
        StatusCode::OK
    );

    // Full: 409, and no use spent.
    assert_eq!(
        patch(json!({"max_members": 3})).await.status(),
        StatusCode::OK
    );
    let dave = app.register("dave").await;
    let detail = detail_of(
        app.redeem(&invite.code, "dave", &dave).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("full"), "{detail}");

    // Banned: 403 by code too.
    let kicked = app
        .send(
            Method::DELETE,
            &format!("/parties/{}/members/carol", party.id),
            Some(&party.alice),
            Some(json!({"ban": true})),
        )
        .await;
    assert_eq!(kicked.status(), StatusCode::OK);
    let detail = detail_of(
        app.redeem(&invite.code, "carol", &carol).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(detail.contains("banned"), "{detail}");

    let listed = app.list_invites(&party.id, &party.alice).await;
    assert_eq!(listed.invites[0].uses, 1, "only carol's join spent a use");
}

#[tokio::test]
async fn concurrent_redemptions_admit_exactly_the_uses_left() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let invite = app.invite(&party, &alice, json!({"max_uses": 5})).await;
    let peers = app.register_numbered("p", 20).await;

    let redemptions = peers
        .iter()
        .map(|(token, peer)| app.redeem(&invite.code, peer, token));
    let answers = futures_util::future::join_all(redemptions).await;

    let admitted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.status() == StatusCode::NOT_FOUND)
        .count();
    assert_eq!((admitted, refused), (5, 15));
    assert_eq!(app.read_party(&party, &alice).await.party.peers.len(), 6);
}

#[tokio::test]
async fn failed_look_ups_are_limited_per_address_and_per_token() {
    let app = spawn_app_with(|c: &mut Config| {
        c.rate_limit = lanrage_server::config::Switch::On;
        c.rate_limit_reads_per_sec = 10_000;
        c.rate_limit_writes_per_sec = 10_000;
        c.rate_limit_token_per_sec = 10_000;
        c.invite_failures_per_min = 3;
        c.invite_max_failures = 100;
    })
    .await;
    let (alice, party) = app.host_party("alice").await;
    let invite = app.invite(&party, &alice, json!({})).await;
    let guesser = app.register("eve").await;
    let wrong = wrong_secret(&invite.code);
    for _ in 0..3 {
        let response = app.preview(&wrong, &guesser).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let limited = app.preview(&invite.code, &guesser).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");

    // Another player, from another address, is not locked out.
    install_tls_provider();
    let elsewhere = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let other = app.register("frank").await;
    let response = elsewhere
        .get(app.url(&format!("/invites/{}", invite.code)))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_socket_joins_by_code() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let invite = app.invite(&party, &alice, json!({})).await;
    let (_, mut socket) = app.registered_socket("bob").await;

    socket
        .send(
            json!({"type": "join_by_code", "code": invite.code.to_lowercase(),
                     "peer": peer_info("bob"), "request_id": "c1"}),
        )
        .await;
    let reply = socket.expect_party_reply().await;
    assert_eq!(reply["request_id"], "c1");
    assert_eq!(reply["party"]["party_id"], party.as_str());

    socket
        .send(
            json!({"type": "join_by_code", "code": "QZXV-1234", "peer": peer_info("bob"),
                     "request_id": "c2"}),
        )
        .await;
    let refused = socket.expect("error").await;
    assert_eq!(refused["request_id"], "c2");
    assert!(
        refused["message"].as_str().unwrap().contains("not found"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_nameplate_rests_a_day_after_its_invite_ends() {
    use lanrage_proto::{PartyId, PeerId, Timestamp};
    use lanrage_server::store::InviteRecord;

    let app = spawn_app().await;
    let now = Timestamp::now();
    let record = |party: &str, ended: Option<Timestamp>| InviteRecord {
        nameplate: "frog".into(),
        party_id: PartyId::parse(party).unwrap(),
        secret: "1234".into(),
        created_by: PeerId::parse("alice").unwrap(),
        created_at: now,
        expires_at: now.plus_secs(3600),
        max_uses: 1,
        uses: 0,
        failures: 0,
        ended_at: ended,
        end_reason: None,
    };
    let claim = |invite: InviteRecord, rested_since: Timestamp| {
        let store = app.service.store().clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let claimed = tx.claim_nameplate(&invite, rested_since).await.unwrap();
            tx.commit().await.unwrap();
            claimed
        }
    };
    assert!(claim(record("p1", None), now.plus_secs(-86_400)).await);
    // Live: held, whatever the rest.
    assert!(!claim(record("p2", None), now.plus_secs(-86_400)).await);
    // Ended (here: expired) less than a day ago: still held.
    let a_day_after_expiry = now.plus_secs(3600 + 86_400);
    assert!(!claim(record("p2", None), a_day_after_expiry.plus_secs(-86_401)).await);
    assert!(claim(record("p2", None), a_day_after_expiry.plus_secs(-86_400)).await);
    assert_eq!(
        app.service
            .store()
            .invite("frog")
            .await
            .unwrap()
            .unwrap()
            .party_id
            .as_str(),
        "p2"
    );

    // The cleanup forgets invites whose nameplate has rested.
    let report = app.cleanup_at(now.plus_secs(3600 + 86_400 + 1)).await;
    assert_eq!(report.swept.invites, 1);
    assert!(app.service.store().invite("frog").await.unwrap().is_none());
}

#[tokio::test]
async fn an_expired_code_leads_nowhere() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let invite = app.invite(&party, &alice, json!({"ttl_secs": 60})).await;
    // A minute later, as far as the database knows.
    app.sql(&format!(
        "UPDATE invites SET expires_at = expires_at - 61000000 WHERE nameplate = '{}'",
        invite.nameplate
    ))
    .await;
    let bob = app.register("bob").await;
    let detail = detail_of(
        app.redeem(&invite.code, "bob", &bob).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(detail, NOT_FOUND);
    let listed = app.list_invites(&party, &alice).await;
    assert!(listed.invites.is_empty());
}
