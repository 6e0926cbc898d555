//! The server's settings: every one a flag and an environment variable.
//!
//! The command line only turns text into values; [`Config::validate`] is
//! the one place that decides which values a server can run with, for the
//! command line, the config file and a `Config` built in code alike.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, ValueEnum};
use lanrage_proto::{HostPolicy, JoinPolicy, PartySettings, SettingsPatch};

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(value.to_owned()))
    }
}

/// An origin as browsers send it: `http(s)://host[:port]`.
fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("not an origin: one starts with http:// or https://")?;
    if rest.is_empty()
        || rest.contains(|c: char| c == '/' || c.is_whitespace())
        || axum::http::HeaderValue::from_str(value).is_err()
    {
        return Err("not an origin like https://example.com[:port]".into());
    }
    Ok(value.to_owned())
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// When a SQLite commit is on disk (`--sqlite-synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SqliteSync {
    /// The write-ahead log is synced at checkpoints: every acknowledged
    /// write survives the process being killed; a power loss or kernel
    /// crash may lose the last commits before a checkpoint.
    #[default]
    Normal,
    /// Every commit is synced before it is acknowledged: nothing
    /// acknowledged is lost to a power loss, at the cost of one sync per
    /// group commit.
    Full,
}

/// Which registrations the server accepts (`--identity-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum IdentityMode {
    /// v1 registration (`/auth/register?peer_id=`) works beside key-bound
    /// registration.
    #[default]
    Open,
    /// Only peers that prove their WireGuard key get tokens.
    KeyOnly,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Settings of `lanrage-control serve`.
///
/// A new number setting gets its legal values in [`bounds`] and a line in
/// `Config::numbers`, so [`Config::validate`] checks it.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML file holding any of these settings by flag name; flags and
    /// environment variables override it.
    #[arg(long, env = "LANRAGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "LANRAGE_LISTEN", default_value = "127.0.0.1:8667")]
    pub listen: String,

    /// `sqlite://PATH` (created on first run), or
    /// `postgres://USER:PASSWORD@HOST/DATABASE` for PostgreSQL (several
    /// servers share it). Default: ~/.lanrage/control_plane.db (SQLite).
    #[arg(long, env = "LANRAGE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// When a SQLite commit reaches the disk: `normal` (survives the
    /// process being killed) or `full` (survives a power loss too).
    #[arg(
        long,
        env = "LANRAGE_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t = SqliteSync::Normal
    )]
    pub sqlite_synchronous: SqliteSync,

    /// Connections in the PostgreSQL pool (per server instance).
    #[arg(long, env = "LANRAGE_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,

    /// Operator secret that relays present to register; none refuses relay registration.
    #[arg(long, env = "LANRAGE_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<Secret>,

    /// Operator secret for the `/admin/…` routes (revoke, ban); none refuses them.
    #[arg(long, env = "LANRAGE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// When set, `/auth/register` needs this value in the `X-Registration-Key` header.
    #[arg(long, env = "LANRAGE_REGISTRATION_KEY", hide_env_values = true)]
    pub registration_key: Option<Secret>,

    /// Lifetime of a bearer token.
    #[arg(long, env = "LANRAGE_TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: u64,

    /// `open` (v1 registration works as before) or `key-only` (`/auth/register` refused; peers prove their WireGuard key).
    #[arg(
        long,
        env = "LANRAGE_IDENTITY_MODE",
        value_enum,
        default_value_t = IdentityMode::Open
    )]
    pub identity_mode: IdentityMode,

    /// Seconds a key challenge (`POST /auth/challenge`) can be answered.
    #[arg(long, env = "LANRAGE_CHALLENGE_TTL_SECS", default_value_t = 60)]
    pub challenge_ttl_secs: u64,

    /// `end` (the host leaving ends the party, as in v1) or `migrate` (the next present member takes over), for parties created without a `host_policy`.
    #[arg(long, env = "LANRAGE_DEFAULT_HOST_POLICY", default_value = "end")]
    pub default_host_policy: HostPolicy,

    /// `open` (the party ID is enough to join, as in v1) or `invite` (join codes only), for parties created without a `join_policy`.
    #[arg(long, env = "LANRAGE_DEFAULT_JOIN_POLICY", default_value = "open")]
    pub default_join_policy: JoinPolicy,

    /// A member heard from (socket, request or heartbeat) within this many seconds is present; a migrating party's host absent this long is replaced.
    #[arg(long, env = "LANRAGE_HOST_GRACE_SECS", default_value_t = 45)]
    pub host_grace_secs: u64,

    /// Seconds a join code lives when its host does not say (`ttl_secs`).
    #[arg(long, env = "LANRAGE_INVITE_TTL_SECS", default_value_t = 3600)]
    pub invite_ttl_secs: u64,

    /// Uses of a join code when its host does not say (`max_uses`).
    #[arg(long, env = "LANRAGE_INVITE_MAX_USES", default_value_t = 10)]
    pub invite_max_uses: u64,

    /// Digits in a new join code's secret (4 to 8): each digit makes guessing ten times harder and saying the code a little longer.
    #[arg(long, env = "LANRAGE_INVITE_DIGITS", default_value_t = 4)]
    pub invite_digits: u64,

    /// Wrong secrets a join code takes before it is revoked (reason `guessing`).
    #[arg(long, env = "LANRAGE_INVITE_MAX_FAILURES", default_value_t = 3)]
    pub invite_max_failures: u64,

    /// Failed join-code look-ups (preview or join) per minute per client address (IPv6 per /64) and per token; beyond, 429.
    #[arg(long, env = "LANRAGE_INVITE_FAILURES_PER_MIN", default_value_t = 10)]
    pub invite_failures_per_min: u64,

    /// A relay that has sent a status but none for this long is `stale` and recommended to no party.
    #[arg(long, env = "LANRAGE_RELAY_STALE_SECS", default_value_t = 90)]
    pub relay_stale_secs: u64,

    /// A relay at this load (0 to 1] or with as many sessions as its capacity is `full` and recommended to no party.
    #[arg(long, env = "LANRAGE_RELAY_FULL_LOAD", default_value_t = 0.9)]
    pub relay_full_load: f64,

    /// A party keeps its relay unless another would cost at least this many ms less (or 20 %, whichever is more).
    #[arg(long, env = "LANRAGE_RELAY_SWITCH_MIN_MS", default_value_t = 15)]
    pub relay_switch_min_ms: u64,

    /// Seconds a member's round-trip report counts.
    #[arg(long, env = "LANRAGE_RTT_REPORT_TTL_SECS", default_value_t = 300)]
    pub rtt_report_ttl_secs: u64,

    /// Outcomes a NAT-class pair needs (in the window) before the fleet's statistics plan its pairs instead of the NAT table.
    #[arg(long, env = "LANRAGE_PATH_MIN_SAMPLES", default_value_t = 20)]
    pub path_min_samples: u64,

    /// Days of outcomes the path statistics count.
    #[arg(long, env = "LANRAGE_PATH_STATS_WINDOW_DAYS", default_value_t = 30)]
    pub path_stats_window_days: u64,

    /// A peer silent this long is removed from its party.
    #[arg(long, env = "LANRAGE_PEER_TIMEOUT_SECS", default_value_t = 300)]
    pub peer_timeout_secs: u64,

    /// A relay silent this long is removed from the list.
    #[arg(long, env = "LANRAGE_RELAY_TIMEOUT_SECS", default_value_t = 600)]
    pub relay_timeout_secs: u64,

    /// How often the cleanup loop runs.
    #[arg(long, env = "LANRAGE_CLEANUP_INTERVAL_SECS", default_value_t = 60)]
    pub cleanup_interval_secs: u64,

    /// `off` disables rate limiting (test rigs, or a proxy that limits).
    #[arg(long, env = "LANRAGE_RATE_LIMIT", value_enum, default_value = "on")]
    pub rate_limit: Switch,

    /// State-creating requests (register, create, join) and operator-key checks (relay routes) per second per client address (IPv6 per /64); bursts of 4×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_WRITES_PER_SEC", default_value_t = 5)]
    pub rate_limit_writes_per_sec: u32,

    /// Other requests per second per client address; bursts of 2×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_READS_PER_SEC", default_value_t = 200)]
    pub rate_limit_reads_per_sec: u32,

    /// Authenticated requests per second per bearer token; bursts of 2×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_TOKEN_PER_SEC", default_value_t = 100)]
    pub rate_limit_token_per_sec: u32,

    /// Requests a socket may send per second; bursts of 2×, beyond them `error` answers.
    #[arg(long, env = "LANRAGE_WS_MESSAGES_PER_SEC", default_value_t = 50)]
    pub ws_messages_per_sec: u32,

    /// Proxies (IP addresses, comma-separated) whose X-Forwarded-For names the client for rate limiting.
    #[arg(long, env = "LANRAGE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// How long a queued signal waits for its target to poll.
    #[arg(long, env = "LANRAGE_SIGNAL_TTL_SECS", default_value_t = 60)]
    pub signal_ttl_secs: u64,

    /// Most signals one member may have waiting for one target; beyond it that sender gets 429 (others are not blocked).
    #[arg(long, env = "LANRAGE_SIGNAL_QUEUE_MAX", default_value_t = 64)]
    pub signal_queue_max: u64,

    /// Origins allowed by CORS, comma-separated; empty allows any origin (without credentials).
    #[arg(long, env = "LANRAGE_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Milliseconds between writes of coalesced heartbeats (one batch each).
    /// Default: 1000, or a quarter of --peer-timeout-secs when that is shorter.
    #[arg(long, env = "LANRAGE_HEARTBEAT_FLUSH_MS")]
    pub heartbeat_flush_ms: Option<u64>,

    /// Seconds a connection has to send a complete request head (each request on a kept-alive connection too).
    #[arg(long, env = "LANRAGE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,

    /// Seconds a request body has to arrive in full; beyond it, 408 and the connection is closed.
    #[arg(long, env = "LANRAGE_HTTP_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub http_body_timeout_secs: u64,

    /// Seconds a kept-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "LANRAGE_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub http_idle_timeout_secs: u64,

    /// Open connections (HTTP and WebSocket) per client address; IPv6 counted per /64.
    #[arg(long, env = "LANRAGE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Sockets per client address that have not authenticated yet.
    #[arg(
        long,
        env = "LANRAGE_WS_MAX_UNAUTHENTICATED_PER_IP",
        default_value_t = 64
    )]
    pub ws_max_unauthenticated_per_ip: usize,

    /// Most events kept per party for `resume` (the newest are kept; at least 256).
    #[arg(long, env = "LANRAGE_EVENT_LOG_MAX_PER_PARTY", default_value_t = 1024)]
    pub event_log_max_per_party: u64,

    /// Seconds a new socket has to authenticate before it is closed.
    #[arg(long, env = "LANRAGE_WS_AUTH_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_auth_timeout_secs: u64,

    /// Seconds between pings on a socket; one silent for two intervals is closed.
    #[arg(long, env = "LANRAGE_WS_PING_INTERVAL_SECS", default_value_t = 20)]
    pub ws_ping_interval_secs: u64,

    /// Messages queued for one socket; a socket whose queue fills is dropped as a slow reader.
    #[arg(long, env = "LANRAGE_WS_SEND_QUEUE", default_value_t = 256)]
    pub ws_send_queue: usize,

    /// Largest frame or message a client may send, in bytes.
    #[arg(long, env = "LANRAGE_WS_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub ws_max_message_bytes: usize,

    /// Sockets one peer may hold; a new one beyond it closes the peer's oldest.
    #[arg(long, env = "LANRAGE_WS_MAX_SOCKETS_PER_PEER", default_value_t = 4)]
    pub ws_max_sockets_per_peer: usize,

    /// Authenticated sockets the server holds at once; beyond it upgrades get 503.
    #[arg(long, env = "LANRAGE_WS_MAX_SOCKETS", default_value_t = 50_000)]
    pub ws_max_sockets: usize,

    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key). Reloaded on SIGHUP or when the file changes.
    #[arg(long, env = "LANRAGE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "LANRAGE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Serve /metrics on this address (e.g. an internal interface) instead of on --listen.
    #[arg(long, env = "LANRAGE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "LANRAGE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A setting as the operator gives it: the flag's name without its dashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting(&'static str);

impl Setting {
    pub const CORS_ORIGINS: Self = Self("cors-origins");
    pub const RELAY_FULL_LOAD: Self = Self("relay-full-load");
    pub const TLS_CERT: Self = Self("tls-cert");
    pub const TLS_KEY: Self = Self("tls-key");

    /// The flag without its leading dashes, e.g. `peer-timeout-secs`.
    pub fn flag(self) -> &'static str {
        self.0
    }

    /// The environment variable, e.g. `LANRAGE_PEER_TIMEOUT_SECS`.
    pub fn env(self) -> String {
        env_name(self.0)
    }
}

/// Every flag's variable is its name in capitals under `LANRAGE_`.
fn env_name(flag: &str) -> String {
    format!("LANRAGE_{}", flag.replace('-', "_").to_uppercase())
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{} ({})", self.0, self.env())
    }
}

/// A number setting and the values it accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded {
    pub setting: Setting,
    pub min: u64,
    pub max: u64,
}

impl Bounded {
    const fn new(flag: &'static str, min: u64, max: u64) -> Self {
        Self {
            setting: Setting(flag),
            min,
            max,
        }
    }

    fn check(self, value: u64) -> Result<(), ConfigError> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError::OutOfRange {
                setting: self.setting,
                value,
                min: self.min,
                max: self.max,
            })
        }
    }
}

/// The legal values of every number setting. Zero is never one of them
/// (a zero interval or queue means nothing), and the upper ends keep every
/// duration far inside what timers and timestamps can represent.
pub mod bounds {
    use super::Bounded;

    const YEAR_SECS: u64 = 31_536_000;
    const DAY_SECS: u64 = 86_400;
    const ANY_U32: u64 = u32::MAX as u64;

    pub const DATABASE_POOL_SIZE: Bounded = Bounded::new("database-pool-size", 2, 1000);
    pub const TOKEN_TTL_SECS: Bounded = Bounded::new("token-ttl-secs", 1, YEAR_SECS);
    pub const CHALLENGE_TTL_SECS: Bounded = Bounded::new("challenge-ttl-secs", 1, 3600);
    pub const HOST_GRACE_SECS: Bounded = Bounded::new("host-grace-secs", 1, DAY_SECS);
    pub const INVITE_TTL_SECS: Bounded = Bounded::new("invite-ttl-secs", 60, 604_800);
    pub const INVITE_MAX_USES: Bounded = Bounded::new("invite-max-uses", 1, 100);
    pub const INVITE_DIGITS: Bounded = Bounded::new("invite-digits", 4, 8);
    pub const INVITE_MAX_FAILURES: Bounded = Bounded::new("invite-max-failures", 1, 1000);
    pub const INVITE_FAILURES_PER_MIN: Bounded =
        Bounded::new("invite-failures-per-min", 1, 1_000_000);
    pub const RELAY_STALE_SECS: Bounded = Bounded::new("relay-stale-secs", 1, DAY_SECS);
    pub const RELAY_SWITCH_MIN_MS: Bounded = Bounded::new("relay-switch-min-ms", 1, 10_000);
    pub const RTT_REPORT_TTL_SECS: Bounded = Bounded::new("rtt-report-ttl-secs", 1, DAY_SECS);
    pub const PATH_MIN_SAMPLES: Bounded = Bounded::new("path-min-samples", 1, 1_000_000);
    pub const PATH_STATS_WINDOW_DAYS: Bounded = Bounded::new("path-stats-window-days", 1, 3650);
    pub const PEER_TIMEOUT_SECS: Bounded = Bounded::new("peer-timeout-secs", 1, YEAR_SECS);
    pub const RELAY_TIMEOUT_SECS: Bounded = Bounded::new("relay-timeout-secs", 1, YEAR_SECS);
    pub const CLEANUP_INTERVAL_SECS: Bounded = Bounded::new("cleanup-interval-secs", 1, DAY_SECS);
    pub const RATE_LIMIT_WRITES_PER_SEC: Bounded =
        Bounded::new("rate-limit-writes-per-sec", 1, ANY_U32);
    pub const RATE_LIMIT_READS_PER_SEC: Bounded =
        Bounded::new("rate-limit-reads-per-sec", 1, ANY_U32);
    pub const RATE_LIMIT_TOKEN_PER_SEC: Bounded =
        Bounded::new("rate-limit-token-per-sec", 1, ANY_U32);
    pub const WS_MESSAGES_PER_SEC: Bounded = Bounded::new("ws-messages-per-sec", 1, ANY_U32);
    pub const SIGNAL_TTL_SECS: Bounded = Bounded::new("signal-ttl-secs", 1, DAY_SECS);
    pub const SIGNAL_QUEUE_MAX: Bounded = Bounded::new("signal-queue-max", 1, 10_000);
    pub const HEARTBEAT_FLUSH_MS: Bounded = Bounded::new("heartbeat-flush-ms", 10, 60_000);
    pub const HTTP_HEADER_TIMEOUT_SECS: Bounded = Bounded::new("http-header-timeout-secs", 1, 3600);
    pub const HTTP_BODY_TIMEOUT_SECS: Bounded = Bounded::new("http-body-timeout-secs", 1, 3600);
    pub const HTTP_IDLE_TIMEOUT_SECS: Bounded = Bounded::new("http-idle-timeout-secs", 1, DAY_SECS);
    pub const MAX_CONNECTIONS_PER_IP: Bounded =
        Bounded::new("max-connections-per-ip", 1, 10_000_000);
    pub const WS_MAX_UNAUTHENTICATED_PER_IP: Bounded =
        Bounded::new("ws-max-unauthenticated-per-ip", 1, 10_000_000);
    /// At least the 256 events `resume` promises.
    pub const EVENT_LOG_MAX_PER_PARTY: Bounded =
        Bounded::new("event-log-max-per-party", 256, 1_000_000);
    pub const WS_AUTH_TIMEOUT_SECS: Bounded = Bounded::new("ws-auth-timeout-secs", 1, 600);
    pub const WS_PING_INTERVAL_SECS: Bounded = Bounded::new("ws-ping-interval-secs", 1, 3600);
    pub const WS_SEND_QUEUE: Bounded = Bounded::new("ws-send-queue", 1, 65_536);
    pub const WS_MAX_MESSAGE_BYTES: Bounded =
        Bounded::new("ws-max-message-bytes", 1024, 16_777_216);
    pub const WS_MAX_SOCKETS_PER_PEER: Bounded = Bounded::new("ws-max-sockets-per-peer", 1, 64);
    pub const WS_MAX_SOCKETS: Bounded = Bounded::new("ws-max-sockets", 1, 10_000_000);
}

/// Why a server cannot run with these settings; each names the settings
/// at fault by flag and environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting} must be from {min} to {max}, not {value}")]
    OutOfRange {
        setting: Setting,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{setting}: {value:?} is {reason}")]
    Invalid {
        setting: Setting,
        value: String,
        reason: String,
    },
    #[error("{given} needs {missing} too")]
    Missing { given: Setting, missing: Setting },
    /// Heartbeats written less often than a quarter of the peer timeout
    /// would let live peers be removed.
    #[error(
        "{flush} must be at most a quarter of {timeout}: {flush_ms} ms is more than a quarter of {timeout_secs} s",
        flush = bounds::HEARTBEAT_FLUSH_MS.setting,
        timeout = bounds::PEER_TIMEOUT_SECS.setting
    )]
    FlushSlowerThanTimeout { flush_ms: u64, timeout_secs: u64 },
}

impl ConfigError {
    /// The settings this error is about.
    pub fn settings(&self) -> Vec<Setting> {
        match self {
            Self::OutOfRange { setting, .. } | Self::Invalid { setting, .. } => vec![*setting],
            Self::Missing { given, missing } => vec![*given, *missing],
            Self::FlushSlowerThanTimeout { .. } => vec![
                bounds::HEARTBEAT_FLUSH_MS.setting,
                bounds::PEER_TIMEOUT_SECS.setting,
            ],
        }
    }
}

/// `Config` as a whole command line, for parsing it alone.
#[derive(clap::Parser)]
pub(crate) struct Settings {
    #[command(flatten)]
    pub(crate) config: Config,
}

impl Settings {
    /// The command line of `serve` deaf to the environment.
    fn command_without_env() -> clap::Command {
        Self::command().mut_args(|arg| arg.env(None))
    }
}

impl Config {
    /// The database URL, defaulting to a file under `~/.lanrage/`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
                format!(
                    "sqlite://{}",
                    home.join(".lanrage").join("control_plane.db").display()
                )
            }
        }
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs(self.cleanup_interval_secs)
    }

    /// A new party's settings: the defaults, with what its host asked.
    pub fn party_settings(&self, asked: Option<&SettingsPatch>) -> PartySettings {
        let defaults = PartySettings {
            host_policy: self.default_host_policy,
            join_policy: self.default_join_policy,
            max_members: None,
        };
        asked.map_or(defaults, |patch| defaults.patched(patch))
    }

    /// How often presence is stored and absent hosts are looked for: a
    /// third of the grace period, at most 5 s (a host is replaced within
    /// grace + 5 s), at least 100 ms.
    pub fn presence_interval(&self) -> Duration {
        Duration::from_millis((self.host_grace_secs.saturating_mul(1000) / 3).clamp(100, 5000))
    }

    /// How often coalesced heartbeats are written: as given, or 1 s capped
    /// at a quarter of the peer timeout, so a short peer timeout (a test
    /// rig's 2 s) works with the default.
    pub fn heartbeat_flush(&self) -> Duration {
        let quarter_of_timeout = self.peer_timeout_secs.saturating_mul(1000) / 4;
        Duration::from_millis(
            self.heartbeat_flush_ms
                .unwrap_or_else(|| quarter_of_timeout.clamp(10, 1000)),
        )
    }

    /// The defaults, as `serve` with no flags, no environment and no
    /// config file would use (for tests and embedding). The environment is
    /// never read here: only the command line reads it.
    pub fn defaults() -> Self {
        // An empty command line cannot fail to parse (every field has a
        // default or is optional); `defaults_match_the_design` proves it.
        Settings::command_without_env()
            .try_get_matches_from(["serve"])
            .and_then(|matches| Self::from_arg_matches(&matches))
            .unwrap_or_else(|e| panic!("defaults of Config do not parse: {e}"))
    }

    /// Every number setting with its value (`None`: not given, and its
    /// default adapts to the others).
    fn numbers(&self) -> [(Bounded, Option<u64>); 36] {
        use bounds::*;
        let wide = |n: usize| Some(u64::try_from(n).unwrap_or(u64::MAX));
        [
            (DATABASE_POOL_SIZE, Some(self.database_pool_size.into())),
            (TOKEN_TTL_SECS, Some(self.token_ttl_secs)),
            (CHALLENGE_TTL_SECS, Some(self.challenge_ttl_secs)),
            (HOST_GRACE_SECS, Some(self.host_grace_secs)),
            (INVITE_TTL_SECS, Some(self.invite_ttl_secs)),
            (INVITE_MAX_USES, Some(self.invite_max_uses)),
            (INVITE_DIGITS, Some(self.invite_digits)),
            (INVITE_MAX_FAILURES, Some(self.invite_max_failures)),
            (INVITE_FAILURES_PER_MIN, Some(self.invite_failures_per_min)),
            (RELAY_STALE_SECS, Some(self.relay_stale_secs)),
            (RELAY_SWITCH_MIN_MS, Some(self.relay_switch_min_ms)),
            (RTT_REPORT_TTL_SECS, Some(self.rtt_report_ttl_secs)),
            (PATH_MIN_SAMPLES, Some(self.path_min_samples)),
            (PATH_STATS_WINDOW_DAYS, Some(self.path_stats_window_days)),
            (PEER_TIMEOUT_SECS, Some(self.peer_timeout_secs)),
            (RELAY_TIMEOUT_SECS, Some(self.relay_timeout_secs)),
            (CLEANUP_INTERVAL_SECS, Some(self.cleanup_interval_secs)),
            (
                RATE_LIMIT_WRITES_PER_SEC,
                Some(self.rate_limit_writes_per_sec.into()),
            ),
            (
                RATE_LIMIT_READS_PER_SEC,
                Some(self.rate_limit_reads_per_sec.into()),
            ),
            (
                RATE_LIMIT_TOKEN_PER_SEC,
                Some(self.rate_limit_token_per_sec.into()),
            ),
            (WS_MESSAGES_PER_SEC, Some(self.ws_messages_per_sec.into())),
            (SIGNAL_TTL_SECS, Some(self.signal_ttl_secs)),
            (SIGNAL_QUEUE_MAX, Some(self.signal_queue_max)),
            (HEARTBEAT_FLUSH_MS, self.heartbeat_flush_ms),
            (
                HTTP_HEADER_TIMEOUT_SECS,
                Some(self.http_header_timeout_secs),
            ),
            (HTTP_BODY_TIMEOUT_SECS, Some(self.http_body_timeout_secs)),
            (HTTP_IDLE_TIMEOUT_SECS, Some(self.http_idle_timeout_secs)),
            (MAX_CONNECTIONS_PER_IP, wide(self.max_connections_per_ip)),
            (
                WS_MAX_UNAUTHENTICATED_PER_IP,
                wide(self.ws_max_unauthenticated_per_ip),
            ),
            (EVENT_LOG_MAX_PER_PARTY, Some(self.event_log_max_per_party)),
            (WS_AUTH_TIMEOUT_SECS, Some(self.ws_auth_timeout_secs)),
            (WS_PING_INTERVAL_SECS, Some(self.ws_ping_interval_secs)),
            (WS_SEND_QUEUE, wide(self.ws_send_queue)),
            (WS_MAX_MESSAGE_BYTES, wide(self.ws_max_message_bytes)),
            (WS_MAX_SOCKETS_PER_PEER, wide(self.ws_max_sockets_per_peer)),
            (WS_MAX_SOCKETS, wide(self.ws_max_sockets)),
        ]
    }

    /// Whether a server can run with these settings: every number within
    /// its bounds, every origin an origin, TLS files in pairs, and no two
    /// given values that contradict each other. The first problem found is
    /// the error.
    ///
    /// The command line and the config file are checked by this after
    /// parsing, and [`crate::Server::start`] checks again, so a `Config`
    /// built in code is held to the same rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (bounded, value) in self.numbers() {
            if let Some(value) = value {
                bounded.check(value)?;
            }
        }
        // Only a flush interval the operator gave can contradict the peer
        // timeout; the default adapts to it.
        if let Some(flush_ms) = self.heartbeat_flush_ms
            && flush_ms.saturating_mul(4) > self.peer_timeout_secs.saturating_mul(1000)
        {
            return Err(ConfigError::FlushSlowerThanTimeout {
                flush_ms,
                timeout_secs: self.peer_timeout_secs,
            });
        }
        if !(self.relay_full_load > 0.0 && self.relay_full_load <= 1.0) {
            return Err(ConfigError::Invalid {
                setting: Setting::RELAY_FULL_LOAD,
                value: self.relay_full_load.to_string(),
                reason: "not a load: it must be over 0 and at most 1".into(),
            });
        }
        for origin in &self.cors_origins {
            // An origin with spaces around it would never match a request's.
            let problem = match parse_origin(origin) {
                Ok(parsed) if parsed == *origin => continue,
                Ok(_) => "not an origin: it has spaces around it".to_owned(),
                Err(reason) => reason,
            };
            return Err(ConfigError::Invalid {
                setting: Setting::CORS_ORIGINS,
                value: origin.clone(),
                reason: problem,
            });
        }
        let (cert, key) = (Setting::TLS_CERT, Setting::TLS_KEY);
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(ConfigError::Missing {
                given: cert,
                missing: key,
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                given: key,
                missing: cert,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let secret: Secret = "hunter2".parse().unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!("  ".parse::<Secret>().is_err());
    }

    #[test]
    fn origins_are_validated() {
        assert_eq!(
            parse_origin(" https://lanrage.example ").unwrap(),
            "https://lanrage.example"
        );
        assert!(parse_origin("http://localhost:3000").is_ok());
        for bad in [
            "lanrage.example",
            "https://",
            "https://a.example/path",
            "ftp://x",
            "https://a b",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    /// Also run in a child process with `LANRAGE_*` variables set, by
    /// `defaults_ignore_the_environment`.
    #[test]
    fn defaults_match_the_design() {
        let config = Config::defaults();
        assert_eq!(config.config, None);
        assert_eq!(config.listen, "127.0.0.1:8667");
        assert_eq!(config.database_url, None);
        assert!(config.database_url().ends_with(".lanrage/control_plane.db"));
        assert_eq!(config.database_pool_size, 16);
        assert!(config.relay_key.is_none());
        assert!(config.admin_key.is_none());
        assert!(config.registration_key.is_none());
        assert_eq!(config.token_ttl_secs, 86_400);
        assert_eq!(config.identity_mode, IdentityMode::Open);
        assert_eq!(config.challenge_ttl_secs, 60);
        assert_eq!(config.default_host_policy, HostPolicy::End);
        assert_eq!(config.default_join_policy, JoinPolicy::Open);
        assert_eq!(config.host_grace_secs, 45);
        assert_eq!(config.invite_ttl_secs, 3600);
        assert_eq!(config.invite_max_uses, 10);
        assert_eq!(config.invite_digits, 4);
        assert_eq!(config.invite_max_failures, 3);
        assert_eq!(config.invite_failures_per_min, 10);
        assert_eq!(config.relay_stale_secs, 90);
        assert_eq!(config.relay_full_load, 0.9);
        assert_eq!(config.relay_switch_min_ms, 15);
        assert_eq!(config.rtt_report_ttl_secs, 300);
        assert_eq!(config.path_min_samples, 20);
        assert_eq!(config.path_stats_window_days, 30);
        assert_eq!(config.peer_timeout_secs, 300);
        assert_eq!(config.relay_timeout_secs, 600);
        assert_eq!(config.cleanup_interval_secs, 60);
        assert_eq!(config.rate_limit, Switch::On);
        assert_eq!(config.rate_limit_writes_per_sec, 5);
        assert_eq!(config.rate_limit_reads_per_sec, 200);
        assert_eq!(config.rate_limit_token_per_sec, 100);
        assert_eq!(config.ws_messages_per_sec, 50);
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.signal_ttl_secs, 60);
        assert_eq!(config.signal_queue_max, 64);
        assert!(config.cors_origins.is_empty());
        assert_eq!(config.heartbeat_flush_ms, None);
        assert_eq!(config.heartbeat_flush(), Duration::from_secs(1));
        assert_eq!(config.http_header_timeout_secs, 10);
        assert_eq!(config.http_body_timeout_secs, 10);
        assert_eq!(config.http_idle_timeout_secs, 60);
        assert_eq!(config.max_connections_per_ip, 256);
        assert_eq!(config.ws_max_unauthenticated_per_ip, 64);
        assert_eq!(config.event_log_max_per_party, 1024);
        assert_eq!(config.ws_auth_timeout_secs, 10);
        assert_eq!(config.ws_ping_interval_secs, 20);
        assert_eq!(config.ws_send_queue, 256);
        assert_eq!(config.ws_max_message_bytes, 65_536);
        assert_eq!(config.ws_max_sockets_per_peer, 4);
        assert_eq!(config.ws_max_sockets, 50_000);
        assert_eq!(config.tls_cert, None);
        assert_eq!(config.tls_key, None);
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.sqlite_synchronous, SqliteSync::Normal);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn sqlite_commits_can_be_synced_every_time() {
        let config = parse(&["--sqlite-synchronous", "full"]).unwrap();
        assert_eq!(config.sqlite_synchronous, SqliteSync::Full);
        assert_eq!(config.validate(), Ok(()));
        let refused = parse(&["--sqlite-synchronous", "off"]).unwrap_err();
        assert!(
            refused.to_string().contains("--sqlite-synchronous"),
            "{refused}"
        );
    }

    /// Runs `defaults_match_the_design` in a child process whose
    /// environment holds `env`: changing this process's environment would
    /// race the other tests (and needs `unsafe`).
    fn defaults_under(env: &[(&str, &str)]) {
        let test = "config::tests::defaults_match_the_design";
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--test-threads=1"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "with {env:?}:\n{stdout}\n{stderr}"
        );
    }

    #[test]
    fn defaults_ignore_the_environment() {
        defaults_under(&[
            ("LANRAGE_CONFIG", "/nonexistent/control.toml"),
            ("LANRAGE_LISTEN", "0.0.0.0:1"),
            ("LANRAGE_DATABASE_URL", "postgres://elsewhere/lanrage"),
            ("LANRAGE_RELAY_KEY", "from-the-environment"),
            ("LANRAGE_ADMIN_KEY", "from-the-environment"),
            ("LANRAGE_REGISTRATION_KEY", "from-the-environment"),
            ("LANRAGE_PEER_TIMEOUT_SECS", "7"),
            ("LANRAGE_RATE_LIMIT", "off"),
            ("LANRAGE_TRUSTED_PROXIES", "10.0.0.1"),
            ("LANRAGE_HEARTBEAT_FLUSH_MS", "500"),
            ("LANRAGE_WS_MAX_SOCKETS", "3"),
            ("LANRAGE_LOG_FORMAT", "json"),
        ]);
        // Values the command line would refuse: nothing reads them either,
        // so nothing panics.
        defaults_under(&[
            ("LANRAGE_PEER_TIMEOUT_SECS", "abc"),
            ("LANRAGE_TOKEN_TTL_SECS", "-1"),
            ("LANRAGE_RATE_LIMIT", "sometimes"),
            ("LANRAGE_CORS_ORIGINS", "not-an-origin"),
            ("LANRAGE_TLS_CERT", "/only/the/cert.pem"),
        ]);
    }

    /// `serve ARGS`, parsed without the environment.
    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let matches = Settings::command_without_env()
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))?;
        Config::from_arg_matches(&matches)
    }

    /// The DESIGN's rule: any legal value of one setting works with the
    /// defaults of all the others, and a value beyond either end is
    /// refused naming the setting.
    #[test]
    fn every_number_is_checked_at_both_ends() {
        for (bounded, _) in Config::defaults().numbers() {
            let flag = format!("--{}", bounded.setting.flag());
            for legal in [bounded.min, bounded.max] {
                let config = parse(&[&format!("{flag}={legal}")])
                    .unwrap_or_else(|e| panic!("{flag}={legal}: {e}"));
                assert_eq!(config.validate(), Ok(()), "{flag}={legal}");
            }

            assert!(bounded.min > 0, "{flag}: zero is never legal");
            let below = parse(&[&format!("{flag}={}", bounded.min - 1)])
                .unwrap_or_else(|e| panic!("{flag} below its range: {e}"))
                .validate()
                .unwrap_err();
            assert_eq!(below.settings(), [bounded.setting]);
            let message = below.to_string();
            assert!(
                message.contains(&flag) && message.contains(&bounded.setting.env()),
                "{message}"
            );

            // Past a field's type the parser refuses; within it, validate.
            let above = bounded.max.saturating_add(1);
            let message = match parse(&[&format!("{flag}={above}")]) {
                Err(error) => error.to_string(),
                Ok(config) => config.validate().unwrap_err().to_string(),
            };
            assert!(message.contains(&flag), "{message}");
        }
    }

    #[test]
    fn every_setting_named_is_a_flag_with_its_variable() {
        let command = Settings::command();
        for arg in command.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            assert_eq!(env.to_string_lossy(), env_name(long));
        }
        let named = Config::defaults()
            .numbers()
            .map(|(bounded, _)| bounded.setting)
            .into_iter()
            .chain([Setting::CORS_ORIGINS, Setting::TLS_CERT, Setting::TLS_KEY]);
        for setting in named {
            assert!(
                command.get_arguments().any(|arg| {
                    arg.get_long() == Some(setting.flag()) && arg.get_env().is_some()
                }),
                "{setting} is not a setting of serve"
            );
        }
        assert_eq!(
            bounds::EVENT_LOG_MAX_PER_PARTY.min,
            crate::service::MIN_EVENT_LOG
        );
    }

    /// The README lists every range; each group of flags is followed by
    /// its `MIN to MAX`.
    #[test]
    fn the_readme_gives_every_range() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("The ranges, both ends included:").unwrap();
        let ranges = readme[start..].split("\n\n").next().unwrap();
        let ranges = ranges.split_whitespace().collect::<Vec<_>>().join(" ");
        for (bounded, _) in Config::defaults().numbers() {
            let flag = format!("`--{}`", bounded.setting.flag());
            let at = ranges
                .find(&flag)
                .unwrap_or_else(|| panic!("{flag} is missing: {ranges}"));
            let after: Vec<_> = ranges[at..].split(' ').collect();
            let to = after.iter().position(|word| *word == "to").unwrap();
            let number = |word: &str| {
                word.trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .unwrap()
            };
            assert_eq!(
                (number(after[to - 1]), number(after[to + 1])),
                (bounded.min, bounded.max),
                "{flag}"
            );
        }
    }

    /// Configs built in code that used to panic somewhere in the server,
    /// or to be silently changed, each with the flags its error must name.
    pub(crate) fn unusable() -> Vec<(&'static str, Config, Vec<&'static str>)> {
        let with = |change: fn(&mut Config)| {
            let mut config = Config::defaults();
            change(&mut config);
            config
        };
        vec![
            (
                "a full load of zero: every relay would be full, never recommended",
                with(|c| c.relay_full_load = 0.0),
                vec!["relay-full-load"],
            ),
            (
                "a full load that is not a number",
                with(|c| c.relay_full_load = f64::NAN),
                vec!["relay-full-load"],
            ),
            (
                "zero cleanup interval: tokio's interval_at panics",
                with(|c| c.cleanup_interval_secs = 0),
                vec!["cleanup-interval-secs"],
            ),
            (
                "huge cleanup interval: forgive_downtime's arithmetic overflows",
                with(|c| c.cleanup_interval_secs = u64::MAX),
                vec!["cleanup-interval-secs"],
            ),
            (
                "zero heartbeat flush: tokio's interval panics",
                with(|c| c.heartbeat_flush_ms = Some(0)),
                vec!["heartbeat-flush-ms"],
            ),
            (
                "zero ping interval: each socket's interval_at panics",
                with(|c| c.ws_ping_interval_secs = 0),
                vec!["ws-ping-interval-secs"],
            ),
            (
                "huge token TTL: TimeDelta::seconds panics at registration",
                with(|c| c.token_ttl_secs = u64::MAX),
                vec!["token-ttl-secs"],
            ),
            (
                "huge signal TTL: TimeDelta::seconds panics on a signal",
                with(|c| c.signal_ttl_secs = u64::MAX),
                vec!["signal-ttl-secs"],
            ),
            (
                "huge peer timeout: TimeDelta::seconds panics in cleanup",
                with(|c| c.peer_timeout_secs = u64::MAX),
                vec!["peer-timeout-secs"],
            ),
            (
                "huge relay timeout: TimeDelta::seconds panics in cleanup",
                with(|c| c.relay_timeout_secs = u64::MAX),
                vec!["relay-timeout-secs"],
            ),
            (
                "huge idle timeout: Instant + Duration overflows per connection",
                with(|c| c.http_idle_timeout_secs = u64::MAX),
                vec!["http-idle-timeout-secs"],
            ),
            (
                "event log below the resume promise: silently raised to 256",
                with(|c| c.event_log_max_per_party = 0),
                vec!["event-log-max-per-party"],
            ),
            (
                "zero send queue: silently one",
                with(|c| c.ws_send_queue = 0),
                vec!["ws-send-queue"],
            ),
            (
                "a pool of one: silently two",
                with(|c| c.database_pool_size = 1),
                vec!["database-pool-size"],
            ),
            (
                "a certificate without its key: silently plain HTTP",
                with(|c| c.tls_cert = Some("cert.pem".into())),
                vec!["tls-cert", "tls-key"],
            ),
            (
                "an origin that is not one: silently dropped",
                with(|c| c.cors_origins = vec!["lanrage.example".into()]),
                vec!["cors-origins"],
            ),
            (
                "heartbeats written after the peer times out",
                with(|c| {
                    c.peer_timeout_secs = 1;
                    c.heartbeat_flush_ms = Some(2000);
                }),
                vec!["heartbeat-flush-ms", "peer-timeout-secs"],
            ),
        ]
    }

    #[test]
    fn configs_built_in_code_are_refused_naming_the_settings() {
        for (why, config, flags) in unusable() {
            let error = config.validate().expect_err(why);
            let named: Vec<_> = error.settings().iter().map(|s| s.flag()).collect();
            assert_eq!(named, flags, "{why}");
            let message = error.to_string();
            for flag in flags {
                assert!(message.contains(&format!("--{flag}")), "{why}: {message}");
            }
        }
    }

    #[test]
    fn only_a_flush_interval_given_can_contradict_the_peer_timeout() {
        let mut config = Config::defaults();
        config.peer_timeout_secs = 1;
        assert_eq!(config.validate(), Ok(()));
        config.heartbeat_flush_ms = Some(250);
        assert_eq!(config.validate(), Ok(()));
        config.heartbeat_flush_ms = Some(251);
        assert_eq!(
            config.validate(),
            Err(ConfigError::FlushSlowerThanTimeout {
                flush_ms: 251,
                timeout_secs: 1
            })
        );
    }

    #[test]
    fn the_heartbeat_flush_adapts_to_a_short_peer_timeout() {
        let mut config = Config::defaults();
        for (timeout, flush_ms) in [(1, 250), (2, 500), (3, 750), (4, 1000), (300, 1000)] {
            config.peer_timeout_secs = timeout;
            assert_eq!(
                config.heartbeat_flush(),
                Duration::from_millis(flush_ms),
                "{timeout}"
            );
        }
        config.heartbeat_flush_ms = Some(2000);
        assert_eq!(config.heartbeat_flush(), Duration::from_secs(2));
    }
}
