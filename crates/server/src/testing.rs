//! Helpers for the crate's unit tests.

/// Runs `hold` on another thread and panics while what it returned (a lock
/// guard) is still held: a poisoning lock would then refuse, or make its
/// callers skip, every later use of the data it guards.
pub(crate) fn panic_holding<G>(hold: impl FnOnce() -> G + Send) {
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _guard = hold();
                panic!("a deliberate panic while holding a lock");
            })
            .join()
    });
    assert!(outcome.is_err(), "the holding thread panicked");
}

/// A peer ID that parses.
pub(crate) fn peer(id: &str) -> lanrage_proto::PeerId {
    lanrage_proto::PeerId::parse(id).unwrap()
}

/// A peer's info, named after it, with a fixed key and no addresses.
pub(crate) fn info(id: &str) -> lanrage_proto::PeerInfo {
    use lanrage_proto::{IpOrUnknown, Name, NatType, PeerInfo, PublicKey};

    PeerInfo {
        peer_id: peer(id),
        name: Name::parse(id).unwrap(),
        public_key: PublicKey::from_bytes(&[7; 32]),
        nat_type: NatType::Open,
        public_ip: IpOrUnknown::Unknown,
        public_port: 0,
        local_ip: IpOrUnknown::Unknown,
        local_port: 0,
    }
}
