//! RFC 5780 NAT behaviour discovery results turned into the path plan's
//! [`NatReport`]: what the tests showed, `unknown` wherever one could not
//! run or could not decide, never a guess. The tests themselves (STUN
//! Binding requests against a server with an alternate address) are the
//! application's; this is the reading of their answers.

use std::net::SocketAddr;

use lanrage_proto::{NatBehaviour, NatReport};

/// What the mapping behaviour test (RFC 5780, section 4.3) saw: the
/// XOR-MAPPED-ADDRESS of Binding requests sent from one local socket to
/// the STUN server's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingTest {
    /// The local address the requests were sent from, as the server would
    /// see it without a NAT: the socket's address on its interface, not
    /// the unspecified `0.0.0.0` it may be bound to.
    pub local: SocketAddr,
    /// Test I: the mapped address from the server's primary address.
    pub primary: SocketAddr,
    /// Test II: the mapped address from the server's alternate IP address
    /// and primary port; `None` when it did not run (the server named no
    /// OTHER-ADDRESS) or got no answer.
    pub alternate_ip: Option<SocketAddr>,
    /// Test III: the mapped address from the alternate IP address and the
    /// alternate port; `None` when it did not run or got no answer.
    pub alternate_ip_and_port: Option<SocketAddr>,
}

impl MappingTest {
    /// The mapping behaviour these answers show.
    ///
    /// - Test I mapped to the local address itself: no NAT (`none`).
    /// - Test II mapped to the same address as test I (another
    ///   destination address, the same mapping): `endpoint_independent`.
    /// - Otherwise test III (the same destination address as test II,
    ///   another port) mapped to the same address as test II:
    ///   `address_dependent`; to another: `address_and_port_dependent`.
    /// - A test needed for the decision that did not run: `unknown`.
    pub fn behaviour(&self) -> NatBehaviour {
        if self.primary == self.local {
            return NatBehaviour::None;
        }
        let Some(second) = self.alternate_ip else {
            return NatBehaviour::Unknown;
        };
        if second == self.primary {
            return NatBehaviour::EndpointIndependent;
        }
        match self.alternate_ip_and_port {
            Some(third) if third == second => NatBehaviour::AddressDependent,
            Some(_) => NatBehaviour::AddressAndPortDependent,
            None => NatBehaviour::Unknown,
        }
    }
}

/// What the filtering behaviour test (RFC 5780, section 4.4) saw: whether
/// the answers the server sent from its other addresses (CHANGE-REQUEST)
/// came through. Test I, the plain request, must have been answered for
/// this test to mean anything; when it was not, there is no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilteringTest {
    /// Test II: the answer to "change IP and port" arrived.
    pub change_ip_and_port: bool,
    /// Test III: the answer to "change port" arrived; `None` when it did
    /// not run (test II was answered, or the test stopped).
    pub change_port: Option<bool>,
}

impl FilteringTest {
    /// The filtering behaviour these answers show, with `nat` the mapping
    /// behaviour the same host measured.
    ///
    /// - Test II answered: `endpoint_independent`, or `none` when the
    ///   mapping test found no NAT (nothing filters: the host is open).
    /// - Otherwise test III answered: `address_dependent`; not answered:
    ///   `address_and_port_dependent` (a firewall without NAT filters so
    ///   too, and is reported as it filters).
    /// - Test III needed but not run: `unknown`.
    pub fn behaviour(&self, nat: NatBehaviour) -> NatBehaviour {
        if self.change_ip_and_port {
            return if nat == NatBehaviour::None {
                NatBehaviour::None
            } else {
                NatBehaviour::EndpointIndependent
            };
        }
        match self.change_port {
            Some(true) => NatBehaviour::AddressDependent,
            Some(false) => NatBehaviour::AddressAndPortDependent,
            None => NatBehaviour::Unknown,
        }
    }
}

/// The results of RFC 5780's NAT behaviour discovery, as far as it got,
/// and whether a port-mapping protocol (UPnP, NAT-PMP, PCP) opened a port:
/// [`Rfc5780Results::nat_report`] is what
/// [`HttpClient::report_nat`](crate::HttpClient::report_nat) sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rfc5780Results {
    /// `None`: the mapping test did not run, or test I got no answer.
    pub mapping: Option<MappingTest>,
    /// `None`: the filtering test did not run (the server has no
    /// alternate address), or test I got no answer.
    pub filtering: Option<FilteringTest>,
    /// A port-mapping protocol opened a port for this host.
    pub port_mapping: bool,
}

impl Rfc5780Results {
    /// The mapping behaviour; `unknown` without a mapping test.
    pub fn mapping_behaviour(&self) -> NatBehaviour {
        self.mapping
            .map_or(NatBehaviour::Unknown, |test| test.behaviour())
    }

    /// The filtering behaviour; `unknown` without a filtering test (even
    /// when no NAT was found: a firewall may still filter).
    pub fn filtering_behaviour(&self) -> NatBehaviour {
        self.filtering.map_or(NatBehaviour::Unknown, |test| {
            test.behaviour(self.mapping_behaviour())
        })
    }

    /// The report for the path plan.
    pub fn nat_report(&self) -> NatReport {
        NatReport {
            mapping: self.mapping_behaviour(),
            filtering: self.filtering_behaviour(),
            port_mapping: self.port_mapping,
        }
    }
}

impl From<Rfc5780Results> for NatReport {
    fn from(results: Rfc5780Results) -> Self {
        results.nat_report()
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::NatBehaviour::{
        AddressAndPortDependent as Apd, AddressDependent as Ad, EndpointIndependent as Ei,
        None as Open, Unknown,
    };

    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const LOCAL: &str = "192.168.1.20:51820";

    fn mapping(
        primary: &str,
        alternate_ip: Option<&str>,
        alternate_ip_and_port: Option<&str>,
    ) -> MappingTest {
        MappingTest {
            local: at(LOCAL),
            primary: at(primary),
            alternate_ip: alternate_ip.map(at),
            alternate_ip_and_port: alternate_ip_and_port.map(at),
        }
    }

    #[test]
    fn the_mapping_test_reads_as_rfc_5780_section_4_3_says() {
        let mapped = "203.0.113.7:40001";
        let other = "203.0.113.7:40002";
        let third = "203.0.113.7:40003";
        for (test, expected) in [
            // Mapped to itself: no NAT, whatever else ran.
            (mapping(LOCAL, None, None), Open),
            (mapping(LOCAL, Some(mapped), Some(other)), Open),
            // The same mapping for another destination address.
            (mapping(mapped, Some(mapped), None), Ei),
            (mapping(mapped, Some(mapped), Some(other)), Ei),
            // A new mapping per address, kept across its ports.
            (mapping(mapped, Some(other), Some(other)), Ad),
            // A new mapping per address and port.
            (mapping(mapped, Some(other), Some(third)), Apd),
            (mapping(mapped, Some(other), Some(mapped)), Apd),
            // Not decidable: test II or the needed test III did not run.
            (mapping(mapped, None, None), Unknown),
            (mapping(mapped, None, Some(other)), Unknown),
            (mapping(mapped, Some(other), None), Unknown),
        ] {
            assert_eq!(test.behaviour(), expected, "{test:?}");
        }
    }

    #[test]
    fn every_pattern_of_answers_decides_only_what_it_shows() {
        // Every way four addresses can compare equal or not, each test
        // answered or not.
        let pool = [LOCAL, "203.0.113.7:1", "203.0.113.7:2", "198.51.100.9:1"];
        let answers = || std::iter::once(None).chain(pool.iter().map(|a| Some(at(a))));
        for primary in pool.map(at) {
            for alternate_ip in answers() {
                for alternate_ip_and_port in answers() {
                    let test = MappingTest {
                        local: at(LOCAL),
                        primary,
                        alternate_ip,
                        alternate_ip_and_port,
                    };
                    let behaviour = test.behaviour();
                    let no_nat = primary == at(LOCAL);
                    let decided = no_nat
                        || alternate_ip == Some(primary)
                        || (alternate_ip.is_some() && alternate_ip_and_port.is_some());
                    assert_eq!(behaviour == Open, no_nat, "{test:?}");
                    assert_eq!(behaviour == Unknown, !decided, "{test:?}");
                    assert_eq!(
                        behaviour == Ei,
                        !no_nat && alternate_ip == Some(primary),
                        "{test:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_the_exact_local_address_means_no_nat() {
        // The same address with another port is a NAT (or a firewall
        // rewriting ports), as is the same port on another address.
        for primary in ["192.168.1.20:51821", "203.0.113.7:51820"] {
            let test = mapping(primary, Some(primary), None);
            assert_eq!(test.behaviour(), Ei, "{primary}");
        }
        // IPv6 compares the same way.
        let v6 = MappingTest {
            local: at("[2001:db8::20]:51820"),
            primary: at("[2001:db8::20]:51820"),
            alternate_ip: None,
            alternate_ip_and_port: None,
        };
        assert_eq!(v6.behaviour(), Open);
    }

    #[test]
    fn the_filtering_test_reads_as_rfc_5780_section_4_4_says() {
        let test = |change_ip_and_port, change_port| FilteringTest {
            change_ip_and_port,
            change_port,
        };
        for (filtering, nat, expected) in [
            // Answered from another address and port.
            (test(true, None), Ei, Ei),
            (test(true, None), Apd, Ei),
            (test(true, Some(false)), Ad, Ei),
            (test(true, None), Unknown, Ei),
            // No NAT and nothing filtered: open.
            (test(true, None), Open, Open),
            // Only from the same address.
            (test(false, Some(true)), Ei, Ad),
            (test(false, Some(true)), Open, Ad),
            // From nowhere else: a NAT, or a firewall without one.
            (test(false, Some(false)), Ei, Apd),
            (test(false, Some(false)), Open, Apd),
            (test(false, Some(false)), Unknown, Apd),
            // Test III needed but not run.
            (test(false, None), Ei, Unknown),
            (test(false, None), Open, Unknown),
        ] {
            assert_eq!(
                filtering.behaviour(nat),
                expected,
                "{filtering:?} with {nat:?}"
            );
        }
    }

    #[test]
    fn results_become_a_report_with_unknown_wherever_a_test_could_not_run() {
        let cone = mapping("203.0.113.7:40001", Some("203.0.113.7:40001"), None);
        let open = mapping(LOCAL, None, None);
        let restricted = FilteringTest {
            change_ip_and_port: false,
            change_port: Some(true),
        };
        let unfiltered = FilteringTest {
            change_ip_and_port: true,
            change_port: None,
        };
        for (results, (mapping, filtering, port_mapping)) in [
            (Rfc5780Results::default(), (Unknown, Unknown, false)),
            (
                Rfc5780Results {
                    port_mapping: true,
                    ..Rfc5780Results::default()
                },
                (Unknown, Unknown, true),
            ),
            (
                Rfc5780Results {
                    mapping: Some(cone),
                    filtering: Some(restricted),
                    port_mapping: false,
                },
                (Ei, Ad, false),
            ),
            // Open needs both tests: no NAT, and nothing filtered.
            (
                Rfc5780Results {
                    mapping: Some(open),
                    filtering: Some(unfiltered),
                    port_mapping: false,
                },
                (Open, Open, false),
            ),
            // No NAT, but no filtering test: a firewall may filter.
            (
                Rfc5780Results {
                    mapping: Some(open),
                    filtering: None,
                    port_mapping: false,
                },
                (Open, Unknown, false),
            ),
            // A filtering test alone: whether a NAT is there is unknown,
            // how it filters is not.
            (
                Rfc5780Results {
                    mapping: None,
                    filtering: Some(unfiltered),
                    port_mapping: true,
                },
                (Unknown, Ei, true),
            ),
        ] {
            let expected = NatReport {
                mapping,
                filtering,
                port_mapping,
            };
            assert_eq!(results.nat_report(), expected, "{results:?}");
            assert_eq!(NatReport::from(results), expected, "{results:?}");
        }
    }

    #[test]
    fn every_reading_is_a_behaviour_the_server_takes() {
        let report = Rfc5780Results {
            mapping: Some(mapping(
                "203.0.113.7:40001",
                Some("203.0.113.7:40002"),
                Some("203.0.113.7:40002"),
            )),
            filtering: Some(FilteringTest {
                change_ip_and_port: false,
                change_port: Some(false),
            }),
            port_mapping: false,
        }
        .nat_report();
        let json = serde_json::to_value(report).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "mapping": "address_dependent",
                "filtering": "address_and_port_dependent",
                "port_mapping": false
            })
        );
    }
}
