//! The server's settings: every one a flag and an environment variable.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};

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
        .ok_or("an origin starts with http:// or https://")?;
    if rest.is_empty()
        || rest.contains(|c: char| c == '/' || c.is_whitespace())
        || axum::http::HeaderValue::from_str(value).is_err()
    {
        return Err(format!(
            "{value:?} is not an origin like https://example.com[:port]"
        ));
    }
    Ok(value.to_owned())
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
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
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML file holding any of these settings by flag name; flags and
    /// environment variables override it.
    #[arg(long, env = "LANRAGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "LANRAGE_LISTEN", default_value = "127.0.0.1:8667")]
    pub listen: String,

    /// `sqlite://PATH` (created on first run). Default: ~/.lanrage/control_plane.db.
    #[arg(long, env = "LANRAGE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connections in the PostgreSQL pool (per server instance).
    #[arg(long, env = "LANRAGE_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_pool_size: u32,

    /// Operator secret that relays present to register; none refuses relay registration.
    #[arg(long, env = "LANRAGE_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<Secret>,

    /// When set, `/auth/register` needs this value in the `X-Registration-Key` header.
    #[arg(long, env = "LANRAGE_REGISTRATION_KEY", hide_env_values = true)]
    pub registration_key: Option<Secret>,

    /// Lifetime of a bearer token.
    #[arg(long, env = "LANRAGE_TOKEN_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub token_ttl_secs: u64,

    /// A peer silent this long is removed from its party.
    #[arg(long, env = "LANRAGE_PEER_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub peer_timeout_secs: u64,

    /// A relay silent this long is removed from the list.
    #[arg(long, env = "LANRAGE_RELAY_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub relay_timeout_secs: u64,

    /// How often the cleanup loop runs.
    #[arg(long, env = "LANRAGE_CLEANUP_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cleanup_interval_secs: u64,

    /// `off` disables rate limiting (test rigs, or a proxy that limits).
    #[arg(long, env = "LANRAGE_RATE_LIMIT", value_enum, default_value = "on")]
    pub rate_limit: Switch,

    /// State-creating requests (register, create, join) and operator-key checks (relay routes) per second per client address (IPv6 per /64); bursts of 4×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_WRITES_PER_SEC", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_writes_per_sec: u32,

    /// Other requests per second per client address; bursts of 2×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_READS_PER_SEC", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_reads_per_sec: u32,

    /// Authenticated requests per second per bearer token; bursts of 2×.
    #[arg(long, env = "LANRAGE_RATE_LIMIT_TOKEN_PER_SEC", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_token_per_sec: u32,

    /// Requests a socket may send per second; bursts of 2×, beyond them `error` answers.
    #[arg(long, env = "LANRAGE_WS_MESSAGES_PER_SEC", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_messages_per_sec: u32,

    /// Proxies (IP addresses, comma-separated) whose X-Forwarded-For names the client for rate limiting.
    #[arg(long, env = "LANRAGE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// How long a queued signal waits for its target to poll.
    #[arg(long, env = "LANRAGE_SIGNAL_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub signal_ttl_secs: u64,

    /// Most signals one member may have waiting for one target; beyond it that sender gets 429 (others are not blocked).
    #[arg(long, env = "LANRAGE_SIGNAL_QUEUE_MAX", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub signal_queue_max: u64,

    /// Origins allowed by CORS, comma-separated; empty allows any origin (without credentials).
    #[arg(long, env = "LANRAGE_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Milliseconds between writes of coalesced heartbeats (one batch each).
    /// Default: 1000, or a quarter of --peer-timeout-secs when that is shorter.
    #[arg(long, env = "LANRAGE_HEARTBEAT_FLUSH_MS",
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub heartbeat_flush_ms: Option<u64>,

    /// Seconds a connection has to send a complete request head (each request on a kept-alive connection too).
    #[arg(long, env = "LANRAGE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_secs: u64,

    /// Seconds a request body has to arrive in full; beyond it, 408 and the connection is closed.
    #[arg(long, env = "LANRAGE_HTTP_BODY_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_body_timeout_secs: u64,

    /// Seconds a kept-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "LANRAGE_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub http_idle_timeout_secs: u64,

    /// Open connections (HTTP and WebSocket) per client address; IPv6 counted per /64.
    #[arg(long, env = "LANRAGE_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_connections_per_ip: usize,

    /// Sockets per client address that have not authenticated yet.
    #[arg(long, env = "LANRAGE_WS_MAX_UNAUTHENTICATED_PER_IP", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub ws_max_unauthenticated_per_ip: usize,

    /// Most events kept per party for `resume` (the newest are kept; at least 256).
    #[arg(long, env = "LANRAGE_EVENT_LOG_MAX_PER_PARTY", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(256..=1_000_000))]
    pub event_log_max_per_party: u64,

    /// Seconds a new socket has to authenticate before it is closed.
    #[arg(long, env = "LANRAGE_WS_AUTH_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ws_auth_timeout_secs: u64,

    /// Seconds between pings on a socket; one silent for two intervals is closed.
    #[arg(long, env = "LANRAGE_WS_PING_INTERVAL_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_ping_interval_secs: u64,

    /// Messages queued for one socket; a socket whose queue fills is dropped as a slow reader.
    #[arg(long, env = "LANRAGE_WS_SEND_QUEUE", default_value_t = 256,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub ws_send_queue: usize,

    /// Largest frame or message a client may send, in bytes.
    #[arg(long, env = "LANRAGE_WS_MAX_MESSAGE_BYTES", default_value_t = 65_536,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=16_777_216))]
    pub ws_max_message_bytes: usize,

    /// Sockets one peer may hold; a new one beyond it closes the peer's oldest.
    #[arg(long, env = "LANRAGE_WS_MAX_SOCKETS_PER_PEER", default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub ws_max_sockets_per_peer: usize,

    /// Authenticated sockets the server holds at once; beyond it upgrades get 503.
    #[arg(long, env = "LANRAGE_WS_MAX_SOCKETS", default_value_t = 50_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub ws_max_sockets: usize,

    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key). Reloaded on SIGHUP or when the file changes.
    #[arg(long, env = "LANRAGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "LANRAGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve /metrics on this address (e.g. an internal interface) instead of on --listen.
    #[arg(long, env = "LANRAGE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "LANRAGE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
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

    /// The defaults, as `serve` with no flags and no environment would use
    /// (for tests and embedding).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        // Parsing an empty command line cannot fail: every field has a default.
        <Wrapper as clap::Parser>::try_parse_from(["serve"])
            .map(|w| w.config)
            .unwrap_or_else(|e| panic!("defaults of Config do not parse: {e}"))
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn defaults_match_the_design() {
        let config = Config::defaults();
        assert_eq!(config.listen, "127.0.0.1:8667");
        assert_eq!(config.token_ttl_secs, 86_400);
        assert_eq!(config.peer_timeout_secs, 300);
        assert_eq!(config.relay_timeout_secs, 600);
        assert_eq!(config.cleanup_interval_secs, 60);
        assert_eq!(config.rate_limit, Switch::On);
        assert!(config.relay_key.is_none());
        assert!(config.database_url().ends_with(".lanrage/control_plane.db"));
        assert_eq!(config.http_header_timeout_secs, 10);
        assert_eq!(config.http_body_timeout_secs, 10);
        assert_eq!(config.http_idle_timeout_secs, 60);
        assert_eq!(config.max_connections_per_ip, 256);
        assert_eq!(config.ws_max_unauthenticated_per_ip, 64);
        assert_eq!(config.event_log_max_per_party, 1024);
        assert_eq!(config.heartbeat_flush(), Duration::from_secs(1));
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
