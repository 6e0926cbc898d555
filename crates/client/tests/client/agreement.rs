//! The local plane and the real server apply the same party rules: random
//! sequences of create, join (first joins, moves and refreshing re-joins),
//! leave, heartbeat and cleanup, applied to both, leave the same parties
//! with the same hosts, members, virtual IPs and `seq`, and draw the same
//! answers and refusals.
//!
//! Party IDs are random on both sides, so parties are matched by creation
//! order. Time is driven, not waited for: a `Mark` step notes an instant
//! between the steps before it and those after, and a `Cleanup` step runs
//! both cleanups as if the peer timeout had passed since the last mark, so
//! the members silent since then (and only those) are stale on both sides.
//!
//! A full party is out of reach here (the server has no member limit below
//! the 65,534 addresses of 10.66.0.0/16): `lanrage-rules` tests that rule,
//! and `local.rs` tests that the local plane honours it.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use lanrage_client::{
    ClientError, ControlPlane, HttpClient, LeaveOutcome, LocalConfig, LocalControlPlane,
};
use lanrage_proto::{JoinPartyResponse, Party, PartyId, PartyResponse, Peer, Timestamp};
use lanrage_server::service::Service;
use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, TestCaseError, TestRunner},
};

use crate::helpers::{TestServer, details, http_config, name, peer_id, spawn_server_with_service};

const PEERS: [&str; 4] = ["ann", "bob", "cyd", "dee"];
const PEER_TIMEOUT: Duration = Duration::from_secs(300);
/// Never reached within a case: no background beat or cleanup interferes.
const QUIET: Duration = Duration::from_secs(3600);

/// One step of a scenario.
#[derive(Debug, Clone)]
enum Step {
    Create {
        peer: usize,
    },
    Join {
        peer: usize,
        party: Pick,
    },
    Leave {
        peer: usize,
        party: Pick,
    },
    Heartbeat {
        peer: usize,
        party: Pick,
    },
    /// Time passes: whatever happened before is older than what follows.
    Mark,
    /// Cleanup with the peer timeout elapsed since the last mark.
    Cleanup,
}

/// Which party a step names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The one the peer is in (a join then refreshes), else as `Live(0)`.
    Own,
    /// One of the parties still going, in creation order, wrapping.
    Live(usize),
    /// One of the parties ever created, in creation order, wrapping: it
    /// may have ended.
    Any(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let peer = 0..PEERS.len();
    // Mostly parties that exist, so most steps change something; refusals
    // come from the rest, and from peers naming parties they are not in.
    let party = prop_oneof![
        2 => Just(Pick::Own),
        3 => (0..4usize).prop_map(Pick::Live),
        1 => (0..4usize).prop_map(Pick::Any),
    ];
    prop_oneof![
        2 => peer.clone().prop_map(|peer| Step::Create { peer }),
        5 => (peer.clone(), party.clone()).prop_map(|(peer, party)| Step::Join { peer, party }),
        2 => (peer.clone(), party.clone()).prop_map(|(peer, party)| Step::Leave { peer, party }),
        2 => (peer, party).prop_map(|(peer, party)| Step::Heartbeat { peer, party }),
        1 => Just(Step::Mark),
        1 => Just(Step::Cleanup),
    ]
}

/// What either side answered, without what legitimately differs (party IDs,
/// times).
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Joined {
        party: Shape,
        virtual_ip: Ipv4Addr,
        seq: u64,
    },
    Left(LeaveOutcome),
    Beat,
    Refused(Option<u16>),
    /// A step that answers nothing to compare (time, cleanup).
    Done,
}

/// A party without its ID and times: name, host, members (their info, not
/// when they were seen).
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    name: String,
    host: String,
    members: BTreeMap<String, Peer>,
}

fn shape(party: &Party) -> Shape {
    Shape {
        name: party.name.to_string(),
        host: party.host_id.to_string(),
        members: party
            .peers
            .iter()
            .map(|(id, peer)| {
                let mut peer = peer.clone();
                peer.last_seen = Timestamp::from_micros(0);
                (id.to_string(), peer)
            })
            .collect(),
    }
}

/// A live party as a whole: its shape, addresses and event count.
#[derive(Debug, Clone, PartialEq)]
struct State {
    party: Shape,
    virtual_ips: BTreeMap<String, Ipv4Addr>,
    seq: u64,
}

fn state(view: &PartyResponse) -> State {
    State {
        party: shape(&view.party),
        virtual_ips: view
            .virtual_ips
            .iter()
            .map(|(id, ip)| (id.to_string(), *ip))
            .collect(),
        seq: view.seq,
    }
}

fn joined(answer: Result<JoinPartyResponse, ClientError>) -> Answer {
    match answer {
        Ok(joined) => Answer::Joined {
            party: shape(&joined.party),
            virtual_ip: joined.virtual_ip,
            seq: joined.seq,
        },
        Err(error) => Answer::Refused(error.status()),
    }
}

fn answer<T>(result: Result<T, ClientError>, ok: impl FnOnce(T) -> Answer) -> Answer {
    result.map_or_else(|error| Answer::Refused(error.status()), ok)
}

/// One party, created on both sides.
#[derive(Debug, Clone)]
struct Created {
    local_id: PartyId,
    server_id: PartyId,
    /// Who created (and so hosts) it.
    host: usize,
}

/// Both sides of one scenario: four local planes sharing a discovery file,
/// and four clients of one real server.
struct Sides {
    locals: Vec<LocalControlPlane>,
    clients: Vec<HttpClient>,
    server: TestServer,
    service: Service,
    /// The parties in creation order.
    created: Vec<Created>,
    mark: Timestamp,
    _dir: tempfile::TempDir,
}

impl Sides {
    async fn start() -> Self {
        let (server, service) = spawn_server_with_service(|config| {
            config.peer_timeout_secs = PEER_TIMEOUT.as_secs();
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut locals = Vec::new();
        let mut clients = Vec::new();
        for id in PEERS {
            let mut config = LocalConfig::new(peer_id(id));
            config.discovery_file = Some(dir.path().join("discovery.json"));
            config.peer_timeout = PEER_TIMEOUT;
            config.cleanup_interval = QUIET;
            config.heartbeat_interval = QUIET;
            locals.push(LocalControlPlane::open(config).await.unwrap());
            let mut config = http_config(&server.url(), id);
            config.heartbeat_interval = QUIET;
            clients.push(HttpClient::new(config).unwrap());
        }
        Self {
            locals,
            clients,
            server,
            service,
            created: Vec::new(),
            mark: Timestamp::now(),
            _dir: dir,
        }
    }

    /// The (local, server) IDs `pick` names for `peer`.
    ///
    /// Which parties are going, and who is in which, is read from the
    /// local side: had that drifted from the server, the comparison after
    /// the step before would have failed.
    async fn pick(&self, peer: usize, pick: Pick) -> (PartyId, PartyId) {
        let locals = self.local_states().await;
        let me = PEERS[peer];
        let live: Vec<usize> = (0..locals.len()).filter(|i| locals[*i].is_some()).collect();
        let own = locals.iter().position(|party| {
            party
                .as_ref()
                .is_some_and(|p| p.party.members.contains_key(me))
        });
        let wrap = |list: &[usize], n: usize| (!list.is_empty()).then(|| list[n % list.len()]);
        let all: Vec<usize> = (0..locals.len()).collect();
        let chosen = match pick {
            Pick::Own => own.or_else(|| wrap(&live, 0)),
            Pick::Live(n) => wrap(&live, n),
            Pick::Any(n) => wrap(&all, n),
        };
        match chosen {
            Some(at) => {
                let created = &self.created[at];
                (created.local_id.clone(), created.server_id.clone())
            }
            None => {
                let never = PartyId::parse("0".repeat(32)).unwrap();
                (never.clone(), never)
            }
        }
    }

    /// Runs `step` on both sides; their answers, local first.
    async fn apply(&mut self, step: &Step) -> (Answer, Answer) {
        match *step {
            Step::Create { peer } => {
                let id = PEERS[peer];
                let party = name(&format!("{id}'s party {}", self.created.len()));
                let local = self.locals[peer]
                    .register_party(party.clone(), details(id))
                    .await;
                let remote = self.clients[peer].register_party(party, details(id)).await;
                if let (Ok(local), Ok(remote)) = (&local, &remote) {
                    self.created.push(Created {
                        local_id: local.party.party_id.clone(),
                        server_id: remote.party.party_id.clone(),
                        host: peer,
                    });
                }
                (joined(local), joined(remote))
            }
            Step::Join { peer, party } => {
                let (local_id, server_id) = self.pick(peer, party).await;
                let id = PEERS[peer];
                let local = self.locals[peer].join_party(&local_id, details(id)).await;
                let remote = self.clients[peer].join_party(&server_id, details(id)).await;
                (joined(local), joined(remote))
            }
            Step::Leave { peer, party } => {
                let (local_id, server_id) = self.pick(peer, party).await;
                let local = self.locals[peer].leave_party(&local_id).await;
                let remote = self.clients[peer].leave_party(&server_id).await;
                (answer(local, Answer::Left), answer(remote, Answer::Left))
            }
            Step::Heartbeat { peer, party } => {
                let (local_id, server_id) = self.pick(peer, party).await;
                let local = self.locals[peer].heartbeat(&local_id).await;
                let remote = self.clients[peer].heartbeat(&server_id).await;
                (
                    answer(local, |()| Answer::Beat),
                    answer(remote, |()| Answer::Beat),
                )
            }
            Step::Mark => {
                // Strictly after every stamp so far, strictly before every
                // stamp to come (stamps are in microseconds).
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.mark = Timestamp::now();
                tokio::time::sleep(Duration::from_millis(2)).await;
                (Answer::Done, Answer::Done)
            }
            Step::Cleanup => {
                let now = self
                    .mark
                    .plus_secs(i64::try_from(PEER_TIMEOUT.as_secs()).unwrap());
                // How many each removes may differ (a silent host and its
                // silent guest: one removal or two, by scan order); what is
                // left may not, and the states are compared after the step.
                let local = self.locals[0].cleanup_at(now).await;
                let report = self.service.cleanup_once(now).await;
                let remote = match report {
                    Ok(report) if report.failures == 0 => Answer::Done,
                    other => panic!("the server's cleanup pass failed: {other:?}"),
                };
                (answer(local, |_| Answer::Done), remote)
            }
        }
    }

    /// Every party ever created, in creation order, as each side has it
    /// now (none once it ended).
    async fn states(&self) -> (Vec<Option<State>>, Vec<Option<State>>) {
        let locals = self.local_states().await;
        let mut remotes = Vec::new();
        for created in &self.created {
            // Read as the host: it is a member for as long as the party
            // lasts (v1: the host leaving ends it).
            let read = self.clients[created.host]
                .get_party(&created.server_id)
                .await;
            remotes.push(match read {
                Ok(view) => Some(state(&view)),
                Err(error) if error.status() == Some(404) => None,
                Err(error) => panic!("reading party {}: {error}", created.server_id),
            });
        }
        (locals, remotes)
    }

    /// Every party ever created, in creation order, as the local side has
    /// it now (none once it ended).
    async fn local_states(&self) -> Vec<Option<State>> {
        let mut local: BTreeMap<PartyId, State> = self.locals[0]
            .discover_parties()
            .await
            .unwrap()
            .iter()
            .map(|view| (view.party.party_id.clone(), state(view)))
            .collect();
        let states = self
            .created
            .iter()
            .map(|created| local.remove(&created.local_id))
            .collect();
        assert!(local.is_empty(), "local parties never created: {local:?}");
        states
    }

    async fn stop(mut self) {
        for local in &self.locals {
            local.close().await.unwrap();
        }
        for client in &self.clients {
            client.close().await.unwrap();
        }
        self.server.stop().await;
    }
}

async fn run_scenario(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut sides = Sides::start().await;
    for (at, step) in steps.iter().enumerate() {
        let (local, remote) = sides.apply(step).await;
        prop_assert_eq!(&local, &remote, "answers to step {} ({:?})", at, step);
        let (local, remote) = sides.states().await;
        prop_assert_eq!(&local, &remote, "parties after step {} ({:?})", at, step);
    }
    sides.stop().await;
    Ok(())
}

#[test]
fn the_local_plane_and_the_server_apply_the_same_rules() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let scenarios =
        (0..PEERS.len(), prop::collection::vec(step(), 3..=19)).prop_map(|(host, rest)| {
            // A party from the start, so that most steps have one to act on.
            let mut steps = vec![Step::Create { peer: host }];
            steps.extend(rest);
            steps
        });
    let result = runner.run(&scenarios, |steps| runtime.block_on(run_scenario(steps)));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
