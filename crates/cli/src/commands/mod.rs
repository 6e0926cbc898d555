//! The client commands: what they share (server, identity, remembered token
//! and party, output mode) and how their errors read.

/// `writeln!` to a locked stdout, as an `io::Result`: a closed stdout (the
/// reader of a pipe went away, as in `| head`) is an error like any other,
/// which `main` turns into a quiet exit instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub mod admin;
pub mod auth;
pub mod host;
pub mod identity;
pub mod invites;
pub mod party;
pub mod paths;
pub mod relay;
pub mod signal;
pub mod status;

use std::{fmt, net::IpAddr};

use anyhow::anyhow;
use clap::{ArgMatches, Args, parser::ValueSource};
use lanrage_client::{ClientError, ControlPlane, HttpClient, HttpConfig, PeerDetails};
use lanrage_proto::{IpOrUnknown, Name, NatType, PartyId, PeerId, PublicKey, Timestamp};
use lanrage_rules::RuleError;
use serde::Serialize;

use identity::{Identity, Sessions, config_dir};

/// The server used when neither `--server` nor `LANRAGE_CONTROL_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8667";

/// Options every client command takes (after the group's name, anywhere).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Control server URL.
    #[arg(
        long,
        env = "LANRAGE_CONTROL_SERVER",
        default_value = DEFAULT_SERVER,
        global = true
    )]
    pub server: String,

    /// Act as this peer ID with v1 registration (no key proof), for servers
    /// and scripts from before key-bound identity. Without it, the command
    /// line proves the WireGuard key kept in ~/.lanrage/identity.json
    /// (created on first use) and acts as the peer ID the server binds to
    /// that key (`lr1…`); against a server without key-bound identity it
    /// registers that ID the v1 way.
    #[arg(long, env = "LANRAGE_PEER_ID", value_parser = parse_peer_id, global = true)]
    pub peer_id: Option<PeerId>,

    /// `X-Registration-Key` for servers that require one.
    #[arg(
        long,
        env = "LANRAGE_REGISTRATION_KEY",
        hide_env_values = true,
        global = true
    )]
    pub registration_key: Option<String>,

    /// Print the server's JSON objects (one per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client options given before the command group
/// (`lanrage-control --server URL party show`). They are not taken by
/// `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct LeadingArgs {
    /// Control server URL (client commands).
    #[arg(long = "server", id = "leading_server", value_name = "SERVER")]
    pub server: Option<String>,
    /// Act as this peer ID, v1 registration (client commands).
    #[arg(long = "peer-id", id = "leading_peer_id", value_name = "PEER_ID", value_parser = parse_peer_id)]
    pub peer_id: Option<PeerId>,
    /// `X-Registration-Key` (client commands).
    #[arg(
        long = "registration-key",
        id = "leading_registration_key",
        value_name = "REGISTRATION_KEY"
    )]
    pub registration_key: Option<String>,
    /// Print JSON (client commands).
    #[arg(long = "json", id = "leading_json")]
    pub json: bool,
}

impl LeadingArgs {
    pub fn is_empty(&self) -> bool {
        self.server.is_none()
            && self.peer_id.is_none()
            && self.registration_key.is_none()
            && !self.json
    }

    /// The options in effect: one written after the group wins, then one
    /// written before it, then the environment and the defaults.
    pub fn merge_into(self, mut args: ClientArgs, group: &ArgMatches) -> ClientArgs {
        let given_after = |id: &str| group.value_source(id) == Some(ValueSource::CommandLine);
        if let Some(server) = self.server
            && !given_after("server")
        {
            args.server = server;
        }
        if let Some(peer_id) = self.peer_id
            && !given_after("peer_id")
        {
            args.peer_id = Some(peer_id);
        }
        if let Some(key) = self.registration_key
            && !given_after("registration_key")
        {
            args.registration_key = Some(key);
        }
        args.json |= self.json;
        args
    }
}

/// How a peer describes itself when creating or joining a party.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// Display name (default: the peer id).
    #[arg(long, value_parser = parse_name)]
    pub name: Option<Name>,
    /// WireGuard public key (default: the key pair kept in ~/.lanrage/identity.json).
    #[arg(long, value_parser = parse_public_key)]
    pub public_key: Option<PublicKey>,
    /// NAT type: unknown, open, full_cone, restricted_cone, port_restricted_cone, symmetric.
    #[arg(long, default_value = "unknown")]
    pub nat_type: NatType,
    /// Public address as seen from the internet, or `unknown`.
    #[arg(long, default_value = "unknown")]
    pub public_ip: IpOrUnknown,
    /// Public WireGuard port (0 when unknown).
    #[arg(long, default_value_t = 0)]
    pub public_port: u16,
    /// LAN address (default: the address of the interface with the default route).
    #[arg(long)]
    pub local_ip: Option<IpOrUnknown>,
    /// LAN WireGuard port.
    #[arg(long, default_value_t = 51820)]
    pub local_port: u16,
}

fn parse_peer_id(value: &str) -> Result<PeerId, String> {
    PeerId::parse(value).map_err(|e| e.to_string())
}

pub fn parse_party_id(value: &str) -> Result<PartyId, String> {
    PartyId::parse(value).map_err(|e| e.to_string())
}

fn parse_name(value: &str) -> Result<Name, String> {
    Name::parse(value).map_err(|e| e.to_string())
}

fn parse_public_key(value: &str) -> Result<PublicKey, String> {
    PublicKey::parse(value).map_err(|e| e.to_string())
}

/// A command's working set: who we are, the client, what we remember.
pub struct Context {
    pub args: ClientArgs,
    pub identity: Identity,
    pub peer_id: PeerId,
    pub http: HttpClient,
    /// `~/.lanrage`.
    pub dir: std::path::PathBuf,
    /// The public key the session proves; `None` with `--peer-id` (v1).
    pub key: Option<PublicKey>,
    sessions: Sessions,
    party: Option<PartyId>,
}

impl Context {
    /// Loads (or creates) the identity and the remembered session for this
    /// server and peer, and builds the client with the remembered token:
    /// key-bound by default, v1 with `--peer-id`.
    pub fn open(args: ClientArgs) -> anyhow::Result<Self> {
        init_logging();
        let dir = config_dir()?;
        identity::create_private_dir(&dir)?;
        let identity = Identity::load_or_create(&dir)?;
        let sessions = Sessions::load(&dir)?;
        let server = args.server.trim_end_matches('/').to_owned();
        let (mut config, remembered, key) = match &args.peer_id {
            Some(peer_id) => (
                HttpConfig::new(server.clone(), peer_id.clone()),
                sessions.get(&server, peer_id),
                None,
            ),
            None => {
                let key = identity.public_key.clone();
                let remembered = sessions.get_key_bound(&server, &key);
                let mut config =
                    HttpConfig::key_bound(server.clone(), identity.private_key.clone());
                if let Some(session) = remembered {
                    // After a rotation the server keeps the first key's ID.
                    config = config.with_peer_id(session.peer_id.clone());
                }
                (config, remembered, Some(key))
            }
        };
        config.registration_key = args.registration_key.clone();
        config.token = remembered.and_then(|s| s.token.clone());
        let peer_id = config.peer_id.clone();
        let party = remembered.and_then(|s| s.party_id.clone());
        let http = HttpClient::new(config).map_err(describe)?;
        Ok(Self {
            party,
            args,
            identity,
            peer_id,
            http,
            dir,
            key,
            sessions,
        })
    }

    /// The party remembered for this server and peer, if any.
    pub fn remembered_party(&self) -> Option<&PartyId> {
        self.party.as_ref()
    }

    /// The party named on the command line, or the one remembered.
    pub fn party(&self, given: Option<PartyId>) -> anyhow::Result<PartyId> {
        given.or_else(|| self.party.clone()).ok_or_else(|| {
            anyhow!(
                "no party given and none remembered for {}: pass a PARTY_ID",
                self.peer_id
            )
        })
    }

    pub fn remember_party(&mut self, party: Option<PartyId>) {
        self.party = party;
    }

    /// What a command that acted on the remembered party (`given` none)
    /// answers when the server says that party is gone, or this peer is no
    /// longer in it: the party is forgotten, since every later command on
    /// it would fail the same way, and the error says so plainly. Any
    /// other outcome is `result` unchanged.
    pub fn forget_if_gone(
        &mut self,
        given: Option<&PartyId>,
        result: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match &result {
            Err(error) if given.is_none() => match self.gone(error) {
                Some(gone) => {
                    self.party = None;
                    Err(anyhow!(gone.to_string()))
                }
                None => result,
            },
            _ => result,
        }
    }

    /// Whether `error` is the server saying the remembered party does not
    /// exist, or does not have this peer.
    pub fn gone(&self, error: &anyhow::Error) -> Option<Gone> {
        let party_id = self.party.as_ref()?;
        let (status, detail) = refusal(error)?;
        if status != 404 {
            return None;
        }
        // The server's details are the rules' texts: comparing with them
        // tells the party's end from an unknown member or join code.
        let not_member = RuleError::NotAMember {
            party_id: party_id.clone(),
            peer_id: self.http.peer_id().clone(),
        };
        if detail == RuleError::PartyNotFound(party_id.clone()).to_string() {
            Some(Gone::Ended(party_id.clone()))
        } else if detail == not_member.to_string() {
            Some(Gone::NotAMember(party_id.clone()))
        } else {
            None
        }
    }

    /// Saves the token in use and the current party (0600, atomically,
    /// merged under a lock with what other processes saved meanwhile).
    pub async fn save(&mut self) -> anyhow::Result<()> {
        let token = self.http.current_token().await;
        // The server's answer to a key proof names the peer.
        let peer_id = self.http.peer_id().clone();
        self.sessions.put(
            self.http.server_url(),
            &peer_id,
            self.key.clone(),
            token,
            self.party.clone(),
        );
        // The file lock may wait for another process: not on a worker.
        tokio::task::block_in_place(|| self.sessions.save())
    }

    /// How this peer describes itself, from the flags and the identity.
    pub fn peer_details(&self, flags: &PeerArgs) -> PeerDetails {
        let name = flags.name.clone().unwrap_or_else(|| {
            // A peer id is always a valid name: 1..64 plain characters.
            Name::parse(self.peer_id.as_str()).unwrap_or_else(|_| self.identity.default_name())
        });
        let public_key = flags
            .public_key
            .clone()
            .unwrap_or_else(|| self.identity.public_key.clone());
        PeerDetails::new(name, public_key)
            .with_nat_type(flags.nat_type)
            .with_public_endpoint(flags.public_ip, flags.public_port)
            .with_local_endpoint(
                flags.local_ip.unwrap_or_else(detect_lan_address),
                flags.local_port,
            )
    }

    /// Prints `value` as one JSON line (for `--json`).
    pub fn print_json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        print_json(value)
    }
}

/// Prints `value` as one JSON line (for `--json`).
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// How a remembered party turned out to be gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The party no longer exists.
    Ended(PartyId),
    /// The party goes on without this peer (removed, or timed out).
    NotAMember(PartyId),
}

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended(party_id) => write!(
                f,
                "party {party_id} has ended; forgotten. Create or join another."
            ),
            Self::NotAMember(party_id) => write!(
                f,
                "you are no longer in party {party_id} (removed, or silent for too long); \
                 forgotten. Create or join another."
            ),
        }
    }
}

/// A moment, to the minute, for people: in the local time zone, the day
/// left out when it is today.
pub fn when(at: Timestamp) -> String {
    let local = at.as_datetime().with_timezone(&chrono::Local);
    if local.date_naive() == chrono::Local::now().date_naive() {
        local.format("%H:%M (local)").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M (local)").to_string()
    }
}

/// The time now, to the second, local: what `party watch` puts before
/// each line.
pub fn now_local() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// The address of the interface that routes to the internet: a UDP socket
/// "connected" to a documentation address picks it without sending anything.
pub fn detect_lan_address() -> IpOrUnknown {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:51820")?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => IpOrUnknown::Ip(ip),
        _ => IpOrUnknown::Unknown,
    }
}

/// Whether `error` is stdout closed under us (`lanrage-control … | head`):
/// not a failure worth reporting.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A client error as the command line words it, the error itself kept so
/// that a command can act on the server's answer (a party gone).
#[derive(Debug)]
pub struct Described {
    text: String,
    error: ClientError,
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// No `source`: the text already names the root cause, and `main` prints
// the whole chain, which would say it twice.
impl std::error::Error for Described {}

/// The server's refusal behind `error`, if it is one: its status and
/// detail.
pub fn refusal(error: &anyhow::Error) -> Option<(u16, &str)> {
    let described = error.downcast_ref::<Described>()?;
    Some((described.error.status()?, described.error.detail()?))
}

/// A client error as one clear line: what failed, and the root cause for
/// network failures (not the whole chain of wrappers).
pub fn describe(error: ClientError) -> anyhow::Error {
    let text = match &error {
        ClientError::Transport { url, kind, .. } => {
            let mut root: &dyn std::error::Error = &error;
            while let Some(source) = root.source() {
                root = source;
            }
            format!("cannot reach the control server ({kind}) at {url}: {root}")
        }
        ClientError::Refused { status, detail, .. } => {
            format!("the control server refused: {detail} ({status})")
        }
        other => lanrage_client::error_chain(other),
    };
    anyhow::Error::new(Described { text, error })
}

/// Logs of the library go to stderr only when `RUST_LOG` asks for them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_reads_in_local_time_with_the_day_only_when_not_today() {
        let now = Timestamp::now();
        let long_ago = Timestamp::from_micros(1_800_000_000_000_000);

        let today = when(now);
        let other_day = when(long_ago);

        let local = long_ago.as_datetime().with_timezone(&chrono::Local);
        assert_eq!(today.len(), "12:31 (local)".len(), "{today}");
        assert!(today.ends_with(" (local)"), "{today}");
        assert_eq!(
            other_day,
            format!("{} (local)", local.format("%Y-%m-%d %H:%M"))
        );
    }
}
