//! Two peers on one control server: alice creates a party, bob joins it,
//! alice sees him arrive and receives his signal on her events, both list
//! the relays, and they leave. Exits non-zero if any step fails.
//!
//! Usage: `party [SERVER_URL]` (default `$LANRAGE_CONTROL_SERVER`, then
//! `http://127.0.0.1:8667`).

use std::{sync::Arc, time::Duration};

use lanrage_client::{
    ControlPlane, Event, Events, LeaveOutcome, PeerDetails, SelectedPlane, Settings,
    create_control_plane,
    proto::{Name, PeerId, PublicKey, SignalData},
};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LANRAGE_CONTROL_SERVER").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8667".into());

    let (alice, mut alice_events) = connect(&url, "alice").await?;
    let (bob, _bob_events) = connect(&url, "bob").await?;

    let created = alice
        .register_party(Name::parse("Friday LAN")?, details("Alice", 1))
        .await?;
    let party_id = created.party.party_id;
    println!("alice created {party_id} and is {}", created.virtual_ip);

    let joined = bob.join_party(&party_id, details("Bob", 2)).await?;
    println!("bob joined as {}", joined.virtual_ip);
    wait_for(
        &mut alice_events,
        "bob's arrival",
        |event| matches!(event, Event::PeerJoined { peer, .. } if peer.peer_id == *bob.peer_id()),
    )
    .await?;
    println!("alice saw bob join");

    let offer = SignalData::parse(serde_json::json!({"type": "offer", "sdp": "v=0"}))?;
    bob.send_signal(&party_id, alice.peer_id(), offer.clone())
        .await?;
    wait_for(
        &mut alice_events,
        "bob's signal",
        |event| matches!(event, Event::Signal(signal) if signal.signal_data == offer),
    )
    .await?;
    println!("alice received bob's offer");

    let relays = alice.list_relays().await?;
    println!("{} relays known", relays.len());

    assert_eq!(bob.leave_party(&party_id).await?, LeaveOutcome::Left);
    assert_eq!(
        alice.leave_party(&party_id).await?,
        LeaveOutcome::PartyDeleted
    );
    println!("both left; the party is over");
    alice.close().await?;
    bob.close().await?;
    Ok(())
}

/// The plane of `peer` on the server at `url`, with its events; a server
/// that does not answer is an error here, since this program is about it.
async fn connect(url: &str, peer: &str) -> Result<(Arc<dyn ControlPlane>, Events), Error> {
    let selected =
        create_control_plane(Settings::new(Some(url.into()), PeerId::parse(peer)?)).await?;
    if let SelectedPlane::Local { reason, .. } = &selected {
        return Err(format!("the server at {url} is not usable: {reason:?}").into());
    }
    let (plane, events) = selected.into_parts();
    Ok((plane, events.ok_or("the remote plane has events")?))
}

/// How a peer shows itself; its key is made up for the example.
fn details(name: &str, key: u8) -> PeerDetails {
    let name = Name::parse(name).unwrap_or_else(|_| unreachable!("a valid name"));
    PeerDetails::new(name, PublicKey::from_bytes(&[key; 32])).with_local_endpoint(
        "192.168.1.20".parse().unwrap_or_else(|_| unreachable!()),
        51820,
    )
}

/// Reads events until `wanted` accepts one, for at most ten seconds.
async fn wait_for(
    events: &mut Events,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Result<(), Error> {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if wanted(&event) {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("the events ended before {what}").into()),
        Err(_) => Err(format!("no {what} within 10 s").into()),
    }
}
