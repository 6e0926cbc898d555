//! Virtual IPs: every member of a party holds one address of 10.66.0.0/16,
//! unique within the party; the host gets the first, each newcomer the
//! lowest one free. The range running out is what makes a party full.

use std::net::Ipv4Addr;

/// The host's offset: its virtual IP is 10.66.0.1.
pub const HOST_VIP_INDEX: u16 = 1;

/// The highest offset a member can get (.255.255 is the broadcast address,
/// .0.0 the network's).
pub const MAX_VIP_INDEX: u16 = u16::MAX - 1;

const NETWORK: [u8; 2] = [10, 66];

/// The virtual IP at `index` in 10.66.0.0/16.
pub fn virtual_ip(index: u16) -> Ipv4Addr {
    let [high, low] = index.to_be_bytes();
    Ipv4Addr::new(NETWORK[0], NETWORK[1], high, low)
}

/// The offset of `ip`, when it is an address these rules hand out.
pub fn vip_index(ip: Ipv4Addr) -> Option<u16> {
    let [a, b, high, low] = ip.octets();
    let index = u16::from_be_bytes([high, low]);
    ([a, b] == NETWORK && (HOST_VIP_INDEX..=MAX_VIP_INDEX).contains(&index)).then_some(index)
}

/// The lowest offset in the range that is not `taken`; none when the
/// party is full.
pub fn free_vip_index(taken: impl IntoIterator<Item = u16>) -> Option<u16> {
    let mut taken: Vec<u16> = taken.into_iter().collect();
    taken.sort_unstable();
    let mut candidate = HOST_VIP_INDEX;
    for index in taken {
        if index == candidate {
            if candidate == MAX_VIP_INDEX {
                return None;
            }
            candidate += 1;
        } else if index > candidate {
            break;
        }
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn virtual_ips_cover_the_slash_16() {
        assert_eq!(virtual_ip(HOST_VIP_INDEX), Ipv4Addr::new(10, 66, 0, 1));
        assert_eq!(virtual_ip(256), Ipv4Addr::new(10, 66, 1, 0));
        assert_eq!(virtual_ip(MAX_VIP_INDEX), Ipv4Addr::new(10, 66, 255, 254));
    }

    #[test]
    fn only_addresses_of_the_range_have_an_offset() {
        assert_eq!(vip_index(Ipv4Addr::new(10, 66, 1, 0)), Some(256));
        assert_eq!(vip_index(Ipv4Addr::new(10, 66, 0, 0)), None);
        assert_eq!(vip_index(Ipv4Addr::new(10, 66, 255, 255)), None);
        assert_eq!(vip_index(Ipv4Addr::new(10, 67, 0, 1)), None);
        assert_eq!(vip_index(Ipv4Addr::UNSPECIFIED), None);
    }

    #[test]
    fn the_lowest_free_offset_is_handed_out() {
        assert_eq!(free_vip_index([]), Some(HOST_VIP_INDEX));
        assert_eq!(free_vip_index([1, 2]), Some(3));
        assert_eq!(free_vip_index([3, 1]), Some(2));
        assert_eq!(free_vip_index([2, 3]), Some(1));
    }

    #[test]
    fn offsets_outside_the_range_block_nothing() {
        assert_eq!(free_vip_index([0, u16::MAX]), Some(1));
        assert_eq!(free_vip_index([0, 1, 1, 2]), Some(3));
    }

    #[test]
    fn a_party_holding_every_offset_is_full() {
        assert_eq!(free_vip_index(HOST_VIP_INDEX..=MAX_VIP_INDEX), None);
        let all_but_last = HOST_VIP_INDEX..MAX_VIP_INDEX;
        assert_eq!(free_vip_index(all_but_last), Some(MAX_VIP_INDEX));
        let with_a_hole = (HOST_VIP_INDEX..=MAX_VIP_INDEX).filter(|i| *i != 4_000);
        assert_eq!(free_vip_index(with_a_hole), Some(4_000));
    }

    proptest! {
        #[test]
        fn the_offset_is_free_lowest_and_round_trips(taken in prop::collection::vec(any::<u16>(), 0..64)) {
            let index = free_vip_index(taken.iter().copied()).expect("64 offsets never fill the range");
            prop_assert!(!taken.contains(&index));
            prop_assert!((HOST_VIP_INDEX..=MAX_VIP_INDEX).contains(&index));
            for lower in HOST_VIP_INDEX..index {
                prop_assert!(taken.contains(&lower));
            }
            prop_assert_eq!(vip_index(virtual_ip(index)), Some(index));
        }
    }
}
