//! Prometheus metrics, one registry per server (no global recorder, so
//! several servers can run in one process, as the tests do), served as
//! OpenMetrics text at `GET /metrics`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::store::{PoolState, StoreError};

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<Labels, Counter>,
    pub http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub sockets: Gauge,
    pub connections: Gauge,
    connections_refused: Family<Labels, Counter>,
    accept_errors: Family<Labels, Counter>,
    http_timeouts: Family<Labels, Counter>,
    pub ws_messages_in: Counter,
    pub ws_messages_out: Counter,
    pub ws_slow_readers_dropped: Counter,
    pub ws_unauthenticated: Gauge,
    pub ws_closes: Family<Labels, Counter>,
    pub ws_upgrades_refused: Family<Labels, Counter>,
    pub parties: Gauge,
    pub peers: Gauge,
    pub relays: Gauge,
    pub signals_sent: Counter,
    pub signals_delivered: Counter,
    pub cleanup_removed: Family<Labels, Counter>,
    /// Path outcomes members reported, by unordered NAT-class pair.
    path_outcomes: Family<Labels, Counter>,
    db_connections: Family<Labels, Gauge>,
    db_max_connections: Family<Labels, Gauge>,
    db_errors: Family<Labels, Counter>,
    /// Every answered request, for the dashboard (the exported family
    /// counts them by route).
    requests_answered: Counter,
    started: std::time::Instant,
    process_cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    /// The CPU time already counted into `process_cpu`.
    process_cpu_seen: parking_lot::Mutex<f64>,
    process_resident: Gauge,
    process_threads: Gauge,
    process_open_fds: Gauge,
    process_max_fds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lanrage");
        let metrics = Self {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            sockets: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Family::default(),
            accept_errors: Family::default(),
            http_timeouts: Family::default(),
            ws_messages_in: Counter::default(),
            ws_messages_out: Counter::default(),
            ws_slow_readers_dropped: Counter::default(),
            ws_unauthenticated: Gauge::default(),
            ws_closes: Family::default(),
            ws_upgrades_refused: Family::default(),
            parties: Gauge::default(),
            peers: Gauge::default(),
            relays: Gauge::default(),
            signals_sent: Counter::default(),
            signals_delivered: Counter::default(),
            cleanup_removed: Family::default(),
            path_outcomes: Family::default(),
            db_connections: Family::default(),
            db_max_connections: Family::default(),
            db_errors: Family::default(),
            requests_answered: Counter::default(),
            started: std::time::Instant::now(),
            process_cpu: Counter::default(),
            process_cpu_seen: parking_lot::Mutex::new(0.0),
            process_resident: Gauge::default(),
            process_threads: Gauge::default(),
            process_open_fds: Gauge::default(),
            process_max_fds: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.http_duration.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time (user and system) the server process used",
            metrics.process_cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process",
            metrics.process_resident.clone(),
        );
        registry.register(
            "process_threads",
            "Threads of the server process",
            metrics.process_threads.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors (connections, database files, sockets)",
            metrics.process_open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "The process's limit on open file descriptors (-1: unlimited); new connections fail at it",
            metrics.process_max_fds.clone(),
        );
        registry.register(
            "connections",
            "Open client connections (HTTP and WebSocket)",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once, by reason (per_address: the address holds --max-connections-per-ip)",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts, by kind (descriptors: out of file descriptors)",
            metrics.accept_errors.clone(),
        );
        registry.register(
            "http_timeouts",
            "Connections closed or requests refused by a timeout, by kind (header, body, idle)",
            metrics.http_timeouts.clone(),
        );
        registry.register(
            "websocket_connections",
            "Open WebSocket connections",
            metrics.sockets.clone(),
        );
        registry.register(
            "websocket_messages_received",
            "Frames received from WebSocket clients",
            metrics.ws_messages_in.clone(),
        );
        registry.register(
            "websocket_messages_sent",
            "Frames written to WebSocket clients",
            metrics.ws_messages_out.clone(),
        );
        registry.register(
            "websocket_slow_readers_dropped",
            "Sockets dropped because their send queue filled or a write to them stalled",
            metrics.ws_slow_readers_dropped.clone(),
        );
        registry.register(
            "websocket_unauthenticated",
            "Open WebSocket connections that have not authenticated yet",
            metrics.ws_unauthenticated.clone(),
        );
        registry.register(
            "websocket_closes",
            "WebSocket connections ended, by reason",
            metrics.ws_closes.clone(),
        );
        registry.register(
            "websocket_upgrades_refused",
            "WebSocket upgrades refused, by reason",
            metrics.ws_upgrades_refused.clone(),
        );
        registry.register("parties", "Parties stored", metrics.parties.clone());
        registry.register(
            "peers",
            "Party members stored, across all parties",
            metrics.peers.clone(),
        );
        registry.register("relays", "Relays registered", metrics.relays.clone());
        registry.register(
            "signals_sent",
            "Signals accepted from senders",
            metrics.signals_sent.clone(),
        );
        registry.register(
            "signals_delivered",
            "Signals written to their target's socket",
            metrics.signals_delivered.clone(),
        );
        registry.register(
            "cleanup_removed",
            "Rows removed by the cleanup loop, by kind",
            metrics.cleanup_removed.clone(),
        );
        registry.register(
            "path_outcomes",
            "Connection outcomes members reported, by NAT-class pair (a <= b) and outcome",
            metrics.path_outcomes.clone(),
        );
        registry.register(
            "db_connections",
            "Database connections by pool and state (idle, in_use)",
            metrics.db_connections.clone(),
        );
        registry.register(
            "db_max_connections",
            "The most connections each database pool opens",
            metrics.db_max_connections.clone(),
        );
        registry.register(
            "db_errors",
            "Database errors that failed a request, socket message or background step, by kind",
            metrics.db_errors.clone(),
        );
        for kind in ["unavailable", "conflict", "other"] {
            metrics.count_db_errors(kind, 0);
        }
        for (family, labels) in [
            (&metrics.connections_refused, &["per_address"][..]),
            (&metrics.accept_errors, &["descriptors", "other"]),
            (&metrics.http_timeouts, &["header", "body", "idle"]),
        ] {
            for label in labels {
                let _ = family.get_or_create(&vec![("kind", (*label).to_owned())]);
            }
        }
        let build_info: Family<Labels, Gauge> = Family::default();
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())])
            .set(1);
        registry.register("build_info", "The running server's version", build_info);
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests_answered.inc();
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(seconds);
    }

    /// Records a reading of the process (at scrape time).
    pub fn observe_process(&self, stats: &crate::process::ProcessStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut seen = self.process_cpu_seen.lock();
        if stats.cpu_seconds > *seen {
            self.process_cpu.inc_by(stats.cpu_seconds - *seen);
            *seen = stats.cpu_seconds;
        }
        self.process_resident.set(gauge(stats.resident_bytes));
        self.process_threads.set(gauge(stats.threads));
        self.process_open_fds.set(gauge(stats.open_fds));
        self.process_max_fds.set(stats.max_fds.map_or(-1, gauge));
    }

    /// HTTP requests answered since the server started.
    pub fn requests_answered(&self) -> u64 {
        self.requests_answered.get()
    }

    /// How long since the server started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Counts a connection or request ended by a timeout of `kind`.
    pub fn count_http_timeout(&self, kind: &str) {
        self.http_timeouts
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Counts a failed accept of `kind`.
    pub fn count_accept_error(&self, kind: &str) {
        self.accept_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Counts a connection closed at once, for `reason`.
    pub fn count_connection_refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&vec![("kind", reason.to_owned())])
            .inc();
    }

    /// One reported path outcome between NAT classes `a` and `b`.
    pub fn count_path_outcome(&self, (a, b): &(String, String), outcome: &str) {
        self.path_outcomes
            .get_or_create(&vec![
                ("class_a", a.clone()),
                ("class_b", b.clone()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn count_removed(&self, kind: &str, count: u64) {
        if count > 0 {
            self.cleanup_removed
                .get_or_create(&vec![("kind", kind.to_owned())])
                .inc_by(count);
        }
    }

    /// Counts a database error that failed a request, a socket message or
    /// a background step.
    pub fn count_db_error(&self, error: &StoreError) {
        self.count_db_errors(error.kind(), 1);
    }

    /// Counts `count` database errors of `kind` (see [`StoreError::kind`]).
    pub fn count_db_errors(&self, kind: &str, count: u64) {
        self.db_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc_by(count);
    }

    /// Records the database's pools, read at scrape time.
    pub fn observe_pools(&self, pools: &[PoolState]) {
        for pool in pools {
            for (state, count) in [("idle", pool.idle), ("in_use", pool.in_use)] {
                self.db_connections
                    .get_or_create(&vec![
                        ("pool", pool.name.to_owned()),
                        ("state", state.to_owned()),
                    ])
                    .set(count.into());
            }
            self.db_max_connections
                .get_or_create(&vec![("pool", pool.name.to_owned())])
                .set(pool.max.into());
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_counters_with_labels() {
        let metrics = Metrics::default();
        metrics.observe_request("/parties", "POST", 200, 0.002);
        metrics.count_removed("stale_peers", 2);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"lanrage_http_requests_total{route="/parties",method="POST",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"lanrage_cleanup_removed_total{kind="stale_peers"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"lanrage_build_info{version=""#), "{text}");
        assert!(
            text.contains("lanrage_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn database_pools_and_errors_are_exported() {
        let metrics = Metrics::default();
        let pool = PoolState {
            name: "write",
            idle: 0,
            in_use: 1,
            max: 1,
        };
        metrics.observe_pools(&[pool]);
        let conflict = StoreError::Conflict(sqlx::Error::RowNotFound);
        metrics.count_db_error(&conflict);
        metrics.count_db_error(&conflict);
        let text = metrics.render();
        for line in [
            r#"lanrage_db_connections{pool="write",state="in_use"} 1"#,
            r#"lanrage_db_connections{pool="write",state="idle"} 0"#,
            r#"lanrage_db_max_connections{pool="write"} 1"#,
            r#"lanrage_db_errors_total{kind="conflict"} 2"#,
            r#"lanrage_db_errors_total{kind="unavailable"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
