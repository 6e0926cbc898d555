//! The remote control plane over HTTP: pooled connections, timeouts, a bearer
//! token obtained and renewed without the caller noticing (by proving the
//! peer's WireGuard key, or by v1 registration), retries with backoff, and
//! the heartbeat task of the party the peer is in. Relay choice and the
//! path plan are in the modules below.

mod admin;
mod paths;
mod relay_choice;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use lanrage_identity::{Purpose, WireGuardKey, prove};
use lanrage_proto::{
    ChallengeRequest, ChallengeResponse, CreateInviteRequest, CreatePartyRequest,
    CreatePartyResponse, ErrorBody, Invite, InvitePreview, InviteResponse, InvitesResponse,
    JoinByCodeRequest, JoinPartyRequest, JoinPartyResponse, KeyProof, KeyTokenResponse,
    KickRequest, KickResponse, Name, PartyId, PartyResponse, Peer, PeerId, PeerResponse,
    PeersResponse, Region, Relay, RelayId, RelayRegistration, RelayStatusResponse, RelaysResponse,
    SendSignalRequest, ServiceInfo, SettingsPatch, SettingsResponse, Signal, SignalData,
    SignalsResponse, StatusResponse, Timestamp, TokenResponse, TransferHostRequest,
    TransferHostResponse,
};
use lanrage_rules::{CodeError, InviteCode, Nameplate};
use reqwest::{Method, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    backoff::{Backoff, retry, retry_if},
    control::{ControlPlane, LeaveOutcome, PeerDetails},
    error::{ClientError, Result, TransportError, TransportKind, is_tls_failure},
    heartbeat::HeartbeatSlot,
    key::PrivateKey,
    tls::TlsConfig,
};

/// The `features` entry of `GET /` that says the server takes key proofs.
pub const KEY_IDENTITY_FEATURE: &str = "key-identity";

/// The `features` entry of `GET /` that says the server has host
/// authority: party settings, handing the party over, removing members,
/// parties that outlive their host.
pub const HOST_MIGRATION_FEATURE: &str = "host-migration";

/// The `features` entry of `GET /` that says the server has join codes:
/// invites a host makes, lists and revokes, and codes anyone previews and
/// joins by.
pub const INVITES_FEATURE: &str = "invites";

/// The `features` entry of `GET /` that says the server has relay
/// choice: relays' status, members' round trips to relays, and one
/// recommended relay per party.
pub const RELAY_CHOICE_FEATURE: &str = "relay-choice";

/// The `features` entry of `GET /` that says the server has path plans:
/// members' NAT behaviour and connection outcomes, and a plan per member
/// pair.
pub const PATH_PLAN_FEATURE: &str = "path-plan";

/// Settings of an [`HttpClient`]: [`HttpConfig::new`], then the `with_`
/// methods (or the fields) for what differs from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// `http://host:port` or `https://…`, optionally with a path prefix.
    pub server_url: String,
    /// The peer this client acts for. For a key-bound client, the ID it
    /// expects the server to answer; the server's answer wins (see
    /// [`HttpConfig::key_bound`]).
    pub peer_id: PeerId,
    /// The WireGuard private key to prove, for key-bound identity. `None`:
    /// v1 registration with `peer_id` alone.
    pub private_key: Option<PrivateKey>,
    /// Deadline to open a TCP connection.
    pub connect_timeout: Duration,
    /// Deadline of one whole request, connection included.
    pub request_timeout: Duration,
    /// Spacing and number of attempts of a failing request.
    pub retry: Backoff,
    /// The longest `Retry-After` worth waiting for; a longer one fails the call.
    pub max_retry_after: Duration,
    /// How often the heartbeat task refreshes the peer.
    pub heartbeat_interval: Duration,
    /// A token is renewed when less than this (or a quarter of its
    /// lifetime, if shorter) is left of it.
    pub renew_before: Duration,
    /// `X-Registration-Key` for servers that require one.
    pub registration_key: Option<String>,
    /// A token kept from an earlier run; renewed when rejected or expired.
    pub token: Option<TokenResponse>,
    /// Idle connections kept open to the server.
    pub pool_max_idle: usize,
    /// Which certificates an `https://` server may present (also for the
    /// socket's `wss://`).
    pub tls: TlsConfig,
}

impl HttpConfig {
    /// Defaults for `server_url` acting as `peer_id`: 5 s to connect, 15 s
    /// per request, 4 attempts from 250 ms to 5 s apart, a heartbeat every
    /// 30 s (the server forgets a peer after 300 s of silence).
    pub fn new(server_url: impl Into<String>, peer_id: PeerId) -> Self {
        Self {
            server_url: server_url.into(),
            peer_id,
            private_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            retry: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(5),
                max_attempts: 4,
            },
            max_retry_after: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            renew_before: Duration::from_secs(60),
            registration_key: None,
            token: None,
            pool_max_idle: 8,
            tls: TlsConfig::default(),
        }
    }

    /// Defaults for `server_url` acting as the peer bound to `private_key`:
    /// tokens come from proving the key (`POST /auth/challenge`, then
    /// `/auth/register/key`), never from a person. The peer ID is the one
    /// derived from the key, unless [`HttpConfig::with_peer_id`] names the
    /// one the server answered before (after a rotation, the server keeps
    /// the first key's ID); either way the ID the server answers is the one
    /// the client uses from then on. A server that does not list
    /// `key-identity` in `GET /`'s `features` gets v1 registration as this
    /// peer ID instead.
    pub fn key_bound(server_url: impl Into<String>, private_key: PrivateKey) -> Self {
        let mut config = Self::new(server_url, private_key.derived_peer_id());
        config.private_key = Some(private_key);
        config
    }

    /// The peer ID to act as (for a key-bound client: the one the server
    /// answered earlier).
    pub fn with_peer_id(mut self, peer_id: PeerId) -> Self {
        self.peer_id = peer_id;
        self
    }

    /// Deadline to open a TCP connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of one whole request, connection included.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Spacing and number of attempts of a failing request.
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// How often the heartbeat task refreshes the peer.
    pub fn with_heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat_interval = every;
        self
    }

    /// `X-Registration-Key` for servers that require one.
    pub fn with_registration_key(mut self, key: impl Into<String>) -> Self {
        self.registration_key = Some(key.into());
        self
    }

    /// A token kept from an earlier run.
    pub fn with_token(mut self, token: TokenResponse) -> Self {
        self.token = Some(token);
        self
    }

    /// Which certificates an `https://` server may present.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }
}

/// The control server's HTTP API as a [`ControlPlane`], plus what only a
/// server offers: host authority ([`HttpClient::transfer_host`],
/// [`HttpClient::kick`], [`HttpClient::party_settings`],
/// [`HttpClient::update_party_settings`],
/// [`HttpClient::register_party_with_settings`]), join codes
/// ([`HttpClient::create_invite`], [`HttpClient::join_by_code`] and the
/// methods beside them), relay choice ([`HttpClient::report_relay_rtts`],
/// [`HttpClient::party_relay`], [`HttpClient::relay_statuses`]), the path
/// plan ([`HttpClient::report_nat`], [`HttpClient::report_paths`],
/// [`HttpClient::party_paths`]), relay registration and status, key
/// rotation and logout.
///
/// Cheap to clone (clones share one connection pool, token and heartbeat).
/// The first call that needs a token registers the peer; a token the server
/// rejects (401) or that is about to expire is renewed and the call goes on.
///
/// # Retries
///
/// A call makes at most [`HttpConfig::retry`]`.max_attempts` attempts in all,
/// registration included (a token obtained on the way is one more request
/// inside the same attempt, never a retry loop of its own), spaced by capped
/// exponential backoff with jitter, or by the server's `Retry-After` (in
/// seconds or as an HTTP date) when that is longer. What is retried depends
/// on whether sending the request twice is safe:
///
/// - reads (`GET`, a join code's preview too), heartbeats, registration,
///   relay registration and status, changing a party's settings, revoking
///   a join code, and reports that replace the last one (round trips to
///   relays, NAT behaviour) are idempotent: retried on any transport error
///   (connect, timeout, a connection cut before the answer), on 5xx and on
///   429;
/// - creating or joining a party (by ID or by code), sending a signal,
///   leaving a party, handing it over, removing a member, making a join
///   code and reporting connection outcomes (each also counts in the
///   server's statistics) are not: they are retried only when the server
///   certainly did not act on them: a connect error (the request was never
///   sent), a 429, or a 503 with `Retry-After`. A timeout or a connection
///   cut after sending fails the call, since the server may have applied
///   it; a signal is never delivered twice by a retry, nor a code's use
///   spent twice, nor an outcome counted twice. A leave or a revocation
///   whose retry answers 404 counts as done (the first attempt did it).
///
/// Other 4xx fail at once with the server's `detail`.
///
/// ```no_run
/// use lanrage_client::{ControlPlane, HttpClient, HttpConfig};
/// use lanrage_proto::{PartyId, PeerId};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("bob").expect("valid id");
/// let client = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", me))?;
/// let party = PartyId::parse("9f1c0e7a").expect("valid id");
/// let view = client.get_party(&party).await?;
/// for (peer_id, peer) in &view.party.peers {
///     println!("{peer_id}: {} at {}:{}", peer.name, peer.local_ip, peer.local_port);
/// }
/// client.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: String,
    http: reqwest::Client,
    /// The socket's TLS settings, for an `https://` server.
    socket_tls: Option<Arc<rustls::ClientConfig>>,
    config: HttpConfig,
    // An async lock: concurrent calls wait for one registration instead of
    // each registering.
    token: tokio::sync::Mutex<Option<HeldToken>>,
    /// The key proven for tokens; a rotation replaces it (with the token
    /// lock held, so no registration proves a key half replaced).
    key: parking_lot::Mutex<Option<PrivateKey>>,
    /// The peer ID the server answered to a key proof, when the client has
    /// seen one: it wins over the configured one.
    bound_peer_id: OnceLock<PeerId>,
    /// The `features` of `GET /`, once the server said.
    features: parking_lot::Mutex<Option<Vec<String>>>,
    heartbeat: HeartbeatSlot,
    heartbeats_sent: AtomicU64,
    registrations: AtomicU64,
}

#[derive(Debug, Clone)]
struct HeldToken {
    response: TokenResponse,
    obtained_at: Timestamp,
}

/// Whether a request may be sent again after a failure that leaves unknown
/// whether the server acted on it.
#[derive(Clone, Copy)]
enum Resend {
    /// Idempotent: any retryable failure is retried.
    Safe,
    /// Like `Safe`, and a 404 to a retry means the work was done (a
    /// revocation whose answer was lost finds nothing left to revoke).
    SafeGoneIsDone,
    /// Not idempotent: retried only when the server did not act.
    Unsafe,
    /// Like `Unsafe`, and a 404 to a retry means the work was done.
    GoneIsDone,
}

/// Who a request authenticates as.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Peer,
    /// The operator's relay key or admin key.
    Operator(&'a str),
}

impl HttpClient {
    /// A client for `config.server_url`; nothing is sent until the first call.
    pub fn new(config: HttpConfig) -> Result<Self> {
        let base = config.server_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 8 {
            return Err(ClientError::Config(format!(
                "server URL {:?} must start with http:// or https://",
                config.server_url
            )));
        }
        // A URL that cannot be parsed would fail every request the same way:
        // say so now rather than retry it as if the network were at fault.
        match reqwest::Url::parse(&base) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => {
                return Err(ClientError::Config(format!(
                    "server URL {:?} has no host",
                    config.server_url
                )));
            }
            Err(e) => {
                return Err(ClientError::Config(format!(
                    "server URL {:?} is malformed: {e}",
                    config.server_url
                )));
            }
        }
        let secure = base.starts_with("https://");
        let tls = if secure {
            config.tls.client_config()?
        } else {
            TlsConfig::refusing_config()?
        };
        let socket_tls = secure.then(|| {
            let mut socket = tls.clone();
            socket.alpn_protocols.clear();
            Arc::new(socket)
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("lanrage-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        let token = config.token.clone().map(|response| HeldToken {
            response,
            // Unknown: assume a full day, the server's default lifetime.
            obtained_at: Timestamp::now().plus_secs(-86_400),
        });
        let bound_peer_id = OnceLock::new();
        if config.private_key.is_some()
            && let Some(held) = &token
        {
            // A remembered token is the server's word on who this key is.
            let _ = bound_peer_id.set(held.response.peer_id.clone());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                http,
                socket_tls,
                token: tokio::sync::Mutex::new(token),
                key: parking_lot::Mutex::new(config.private_key.clone()),
                bound_peer_id,
                features: parking_lot::Mutex::new(None),
                heartbeat: HeartbeatSlot::default(),
                heartbeats_sent: AtomicU64::new(0),
                registrations: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The server URL, without a trailing slash.
    pub fn server_url(&self) -> &str {
        &self.inner.base
    }

    /// The TLS settings for the socket: `None` for a plain-HTTP server.
    pub(crate) fn socket_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.socket_tls.clone()
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// `GET /`: what the server is (no token needed). The factory uses it to
    /// tell whether the server is reachable.
    pub async fn service_info(&self) -> Result<ServiceInfo> {
        let info: ServiceInfo = self
            .call(Method::GET, "/", None::<&()>, Auth::None, Resend::Safe)
            .await?;
        *self.inner.features.lock() = Some(info.features.clone());
        Ok(info)
    }

    /// Whether tokens come from proving a key: a key is configured and the
    /// server lists `key-identity` (asked once, on the first registration).
    pub async fn is_key_bound(&self) -> Result<bool> {
        if self.inner.key.lock().is_none() {
            return Ok(false);
        }
        let config = &self.inner.config;
        retry(&config.retry, config.max_retry_after, |_| {
            self.server_has_key_identity()
        })
        .await
    }

    /// `POST /auth/register` (v1), or for a key-bound client a proof of its
    /// key: a fresh token for this client's peer. It becomes the token
    /// further calls use.
    pub async fn register_peer(&self) -> Result<TokenResponse> {
        let config = &self.inner.config;
        retry(&config.retry, config.max_retry_after, |_| async {
            let mut slot = self.inner.token.lock().await;
            let fresh = self.register_once().await?;
            *slot = Some(fresh.clone());
            Ok(fresh.response)
        })
        .await
    }

    /// The token in use, if one was obtained (to remember it across runs).
    pub async fn current_token(&self) -> Option<TokenResponse> {
        self.inner
            .token
            .lock()
            .await
            .as_ref()
            .map(|held| held.response.clone())
    }

    /// A bearer token valid for a while yet, registering if needed (with
    /// the client's retries).
    pub async fn bearer(&self) -> Result<String> {
        let config = &self.inner.config;
        retry(&config.retry, config.max_retry_after, |_| {
            self.bearer_once()
        })
        .await
    }

    /// [`HttpClient::bearer`] with a single registration attempt: the retry
    /// loop of a call is the only one around it.
    async fn bearer_once(&self) -> Result<String> {
        let mut slot = self.inner.token.lock().await;
        if let Some(held) = slot.as_ref()
            && !self.needs_renewal(held)
        {
            return Ok(held.response.token.clone());
        }
        let fresh = self.register_once().await?;
        let token = fresh.response.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// Forgets `token` if it is still the one in use (the server rejected
    /// it), so the next call registers again.
    pub async fn invalidate_token(&self, token: &str) {
        let mut slot = self.inner.token.lock().await;
        if slot
            .as_ref()
            .is_some_and(|held| held.response.token == token)
        {
            *slot = None;
        }
    }

    fn needs_renewal(&self, held: &HeldToken) -> bool {
        let now = Timestamp::now().as_micros();
        let expires = held.response.expires_at.as_micros();
        let lifetime = expires.saturating_sub(held.obtained_at.as_micros()).max(0);
        let margin = i64::try_from(self.inner.config.renew_before.as_micros())
            .unwrap_or(i64::MAX)
            .min(lifetime / 4);
        expires.saturating_sub(now) <= margin
    }

    /// One registration, no retry: callers own the retry loop. A key-bound
    /// client proves its key (asking `GET /` first, once, whether the
    /// server can check a proof); any other registers its peer ID (v1).
    /// Call it with the token lock held.
    async fn register_once(&self) -> Result<HeldToken> {
        let key = self.inner.key.lock().clone();
        let registration = match key {
            Some(_) => registration_for(self.server_has_key_identity().await?, true),
            None => Registration::Legacy,
        };
        // Not through `call`: that one may need a token, which comes from here.
        let response = match (registration, key) {
            (Registration::Key, Some(key)) => {
                let answer = self.prove_key(&key, Purpose::Register, None).await?;
                self.adopt_peer_id(&answer.peer_id)?;
                answer
            }
            _ => {
                let path = format!("/auth/register?peer_id={}", self.peer_id());
                self.send(Method::POST, &path, None, None).await?
            }
        };
        self.inner.registrations.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer_id = %response.peer_id, expires_at = %response.expires_at, "registered");
        Ok(HeldToken {
            response,
            obtained_at: Timestamp::now(),
        })
    }

    /// Whether the server lists `key-identity`: `GET /` once, then
    /// remembered. No retry: callers own the retry loop.
    async fn server_has_key_identity(&self) -> Result<bool> {
        self.server_has_feature(KEY_IDENTITY_FEATURE).await
    }

    /// Whether the server lists `feature` in `GET /`'s `features`: asked
    /// once, then remembered. No retry: callers own the retry loop.
    async fn server_has_feature(&self, feature: &str) -> Result<bool> {
        let listed = |features: &[String]| features.iter().any(|f| f == feature);
        if let Some(features) = self.inner.features.lock().as_deref() {
            return Ok(listed(features));
        }
        let info: ServiceInfo = self.send(Method::GET, "/", None, None).await?;
        let known = listed(&info.features);
        *self.inner.features.lock() = Some(info.features);
        Ok(known)
    }

    /// [`ClientError::Unsupported`] unless the server lists `feature`. One
    /// attempt: callers own the retry loop.
    async fn require_feature(&self, feature: &'static str) -> Result<()> {
        if self.server_has_feature(feature).await? {
            return Ok(());
        }
        Err(ClientError::Unsupported {
            feature: feature.to_owned(),
            detail: format!(
                "the control server at {} does not offer {feature} (it is not among the \
                 features GET / lists): it is older than this capability",
                self.inner.base
            ),
        })
    }

    /// A challenge for `key`, then the proof for `purpose`: `register`
    /// (no bearer) or `rotate` (with the token in use). One attempt.
    async fn prove_key(
        &self,
        key: &PrivateKey,
        purpose: Purpose,
        bearer: Option<&str>,
    ) -> Result<TokenResponse> {
        let public_key = key.wireguard_key().as_str().to_owned();
        let request = ChallengeRequest {
            public_key: public_key.clone(),
        };
        let challenge: ChallengeResponse = self
            .send(
                Method::POST,
                "/auth/challenge",
                Some(encode(&request)?),
                None,
            )
            .await?;
        let malformed = |why: String| ClientError::Decode {
            what: "POST /auth/challenge".into(),
            source: serde::de::Error::custom(why),
        };
        let server_key = WireGuardKey::parse(&challenge.server_key)
            .map_err(|e| malformed(format!("server_key: {e}")))?;
        let proof = prove(
            key.bytes(),
            key.wireguard_key(),
            &server_key,
            purpose,
            &challenge.challenge_id,
        )
        .map_err(|e| malformed(format!("server_key: {e}")))?;
        let body = KeyProof {
            challenge_id: challenge.challenge_id,
            public_key,
            proof,
        };
        let path = match purpose {
            Purpose::Rotate => "/auth/rotate",
            _ => "/auth/register/key",
        };
        let answer: KeyTokenResponse = self
            .send(Method::POST, path, Some(encode(&body)?), bearer)
            .await?;
        Ok(TokenResponse {
            token: answer.token,
            peer_id: answer.peer_id,
            expires_at: answer.expires_at,
        })
    }

    /// Takes `peer_id`, the server's answer to a key proof, as this
    /// client's peer ID. The server never moves a key to another peer: a
    /// different answer later is a broken contract, not a new identity.
    fn adopt_peer_id(&self, peer_id: &PeerId) -> Result<()> {
        let bound = self.inner.bound_peer_id.get_or_init(|| peer_id.clone());
        if bound == peer_id {
            return Ok(());
        }
        Err(ClientError::Decode {
            what: "a key proof".into(),
            source: serde::de::Error::custom(format!(
                "the server answered peer {peer_id} for this client, which is peer {bound}"
            )),
        })
    }

    /// The peer ID for bodies and paths: for a key-bound client, the one
    /// the server answers, so a token is obtained first when none is held.
    async fn own_id(&self) -> Result<PeerId> {
        if self.inner.key.lock().is_some() && self.inner.bound_peer_id.get().is_none() {
            self.bearer().await?;
        }
        Ok(self.peer_id().clone())
    }

    /// `POST /auth/rotate`: binds `new_key` to this peer in place of the
    /// current key, and proves `new_key` from then on. The peer keeps its
    /// ID; every other token of the peer is revoked by the server, and the
    /// token the rotation returns becomes the one in use. Members of the
    /// peer's party see its new public key; describe the peer with
    /// [`PrivateKey::public_key`] of `new_key` in later creates and joins.
    ///
    /// Retried only when the server certainly did not rotate (as a create
    /// is): after a timeout the rotation may have happened, and then only
    /// `new_key` can renew this peer (build a client with
    /// [`HttpConfig::key_bound`] and [`HttpConfig::with_peer_id`]).
    pub async fn rotate(&self, new_key: PrivateKey) -> Result<TokenResponse> {
        if self.inner.key.lock().is_none() {
            return Err(ClientError::Config(
                "rotation needs a key-bound client (HttpConfig::key_bound)".into(),
            ));
        }
        let config = &self.inner.config;
        retry_if(
            &config.retry,
            config.max_retry_after,
            ClientError::is_retryable_unsent,
            |_| async {
                let mut slot = self.inner.token.lock().await;
                let token = match slot.as_ref() {
                    Some(held) if !self.needs_renewal(held) => held.response.token.clone(),
                    _ => {
                        let fresh = self.register_once().await?;
                        let token = fresh.response.token.clone();
                        *slot = Some(fresh);
                        token
                    }
                };
                let answer = match self
                    .prove_key(&new_key, Purpose::Rotate, Some(&token))
                    .await
                {
                    // The token was revoked meanwhile: prove the current key
                    // for another, once.
                    Err(error) if error.status() == Some(401) => {
                        *slot = None;
                        let fresh = self.register_once().await?;
                        let token = fresh.response.token.clone();
                        *slot = Some(fresh);
                        self.prove_key(&new_key, Purpose::Rotate, Some(&token))
                            .await?
                    }
                    other => other?,
                };
                self.adopt_peer_id(&answer.peer_id)?;
                *self.inner.key.lock() = Some(new_key.clone());
                self.inner.registrations.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer_id = %answer.peer_id, "key rotated");
                *slot = Some(HeldToken {
                    response: answer.clone(),
                    obtained_at: Timestamp::now(),
                });
                Ok(answer)
            },
        )
        .await
    }

    /// `POST /auth/logout`: revokes the token in use, on every server
    /// instance, and forgets it. Without a token there is nothing to
    /// revoke; a token the server already refuses counts as revoked. The
    /// heartbeat and any later call obtain a new token as usual (a
    /// key-bound client by proving its key again): [`ControlPlane::close`]
    /// first to stop for good.
    pub async fn logout(&self) -> Result<()> {
        let Some(token) = self
            .inner
            .token
            .lock()
            .await
            .as_ref()
            .map(|held| held.response.token.clone())
        else {
            return Ok(());
        };
        let config = &self.inner.config;
        // Idempotent: revoking twice is revoking once (the second is a 401).
        let answer = retry(&config.retry, config.max_retry_after, |_| async {
            match self
                .send::<StatusResponse>(Method::POST, "/auth/logout", None, Some(&token))
                .await
            {
                Err(error) if error.status() == Some(401) => Ok(()),
                other => other.map(drop),
            }
        })
        .await;
        self.invalidate_token(&token).await;
        answer
    }

    /// How many tokens this client obtained (registrations and renewals).
    pub fn registrations(&self) -> u64 {
        self.inner.registrations.load(Ordering::Relaxed)
    }

    /// How many heartbeats the heartbeat task sent successfully.
    pub fn heartbeats_sent(&self) -> u64 {
        self.inner.heartbeats_sent.load(Ordering::Relaxed)
    }

    /// The party whose heartbeat task is running, if any.
    pub fn heartbeat_party(&self) -> Option<PartyId> {
        self.inner.heartbeat.party()
    }

    /// `POST /relays` with the operator's relay key.
    pub async fn register_relay(
        &self,
        relay_key: &str,
        relay: &RelayRegistration,
    ) -> Result<RelayStatusResponse> {
        self.call(
            Method::POST,
            "/relays",
            Some(relay),
            Auth::Operator(relay_key),
            Resend::Safe,
        )
        .await
    }

    /// `DELETE /relays/{relay_id}` with the operator's relay key.
    pub async fn deregister_relay(
        &self,
        relay_key: &str,
        relay_id: &RelayId,
    ) -> Result<RelayStatusResponse> {
        let path = format!("/relays/{relay_id}");
        self.call(
            Method::DELETE,
            &path,
            None::<&()>,
            Auth::Operator(relay_key),
            Resend::Safe,
        )
        .await
    }

    /// `POST /parties`, with `settings` when given (then only on a server
    /// that lists host authority), and the heartbeat started.
    async fn create_party(
        &self,
        name: Name,
        me: PeerDetails,
        settings: Option<SettingsPatch>,
    ) -> Result<JoinPartyResponse> {
        let needs_settings = settings.is_some();
        let body = CreatePartyRequest {
            name,
            host_peer_info: me.into_info(self.own_id().await?),
            settings,
        };
        let created: CreatePartyResponse = if needs_settings {
            // An older server would drop the settings without a word.
            self.call_needing(
                HOST_MIGRATION_FEATURE,
                Method::POST,
                "/parties",
                Some(&body),
                Resend::Unsafe,
            )
            .await?
        } else {
            self.call(
                Method::POST,
                "/parties",
                Some(&body),
                Auth::Peer,
                Resend::Unsafe,
            )
            .await?
        };
        self.start_heartbeat(created.party_id.clone());
        Ok(JoinPartyResponse {
            party: created.party,
            virtual_ip: created.virtual_ip,
            seq: created.seq,
            extras: created.extras,
        })
    }

    /// One call with retries (see [`HttpClient`] for which); with
    /// `Auth::Peer`, a 401 renews the token once within the same attempt.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        auth: Auth<'_>,
        resend: Resend,
    ) -> Result<T> {
        self.call_or_gone(method, path, body, auth, resend, None)
            .await?
            .ok_or_else(|| ClientError::refused(StatusCode::NOT_FOUND, "not found"))
    }

    /// [`HttpClient::call`] for a capability beyond v1: refused with
    /// [`ClientError::Unsupported`], unsent, when the server does not list
    /// `feature` (asked once, within the call's attempts).
    async fn call_needing<T: DeserializeOwned>(
        &self,
        feature: &'static str,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        resend: Resend,
    ) -> Result<T> {
        self.call_or_gone(method, path, body, Auth::Peer, resend, Some(feature))
            .await?
            .ok_or_else(|| ClientError::refused(StatusCode::NOT_FOUND, "not found"))
    }

    /// [`HttpClient::call`]; with [`Resend::GoneIsDone`] or
    /// [`Resend::SafeGoneIsDone`], a 404 to a retry is `None`: the attempt
    /// before it did the work. With `needs`, the server must list that
    /// feature first.
    async fn call_or_gone<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        auth: Auth<'_>,
        resend: Resend,
        needs: Option<&'static str>,
    ) -> Result<Option<T>> {
        let body = match body {
            Some(body) => Some(encode(body)?),
            None => None,
        };
        let config = &self.inner.config;
        let should_retry = |error: &ClientError| match resend {
            Resend::Safe | Resend::SafeGoneIsDone => error.is_retryable(),
            Resend::Unsafe | Resend::GoneIsDone => error.is_retryable_unsent(),
        };
        retry_if(
            &config.retry,
            config.max_retry_after,
            should_retry,
            |attempt| {
                let method = method.clone();
                let body = body.clone();
                async move {
                    if let Some(feature) = needs {
                        self.require_feature(feature).await?;
                    }
                    let answer = match auth {
                        Auth::Peer => {
                            let token = self.bearer_once().await?;
                            match self
                                .send(method.clone(), path, body.clone(), Some(&token))
                                .await
                            {
                                Err(error) if error.status() == Some(401) => {
                                    tracing::info!(
                                        detail = error.detail(),
                                        "token rejected; registering again"
                                    );
                                    self.invalidate_token(&token).await;
                                    let token = self.bearer_once().await?;
                                    self.send(method, path, body, Some(&token)).await
                                }
                                other => other,
                            }
                        }
                        Auth::Operator(key) => self.send(method, path, body, Some(key)).await,
                        Auth::None => self.send(method, path, body, None).await,
                    };
                    match answer {
                        Ok(value) => Ok(Some(value)),
                        Err(error)
                            if attempt > 1
                                && matches!(
                                    resend,
                                    Resend::GoneIsDone | Resend::SafeGoneIsDone
                                )
                                && error.status() == Some(404) =>
                        {
                            tracing::debug!(%error, "404 to a retry: the first attempt did it");
                            Ok(None)
                        }
                        Err(error) => Err(error),
                    }
                }
            },
        )
        .await
    }

    /// One HTTP exchange, its answer decoded or classified.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<T> {
        let url = format!("{}{}", self.inner.base, path);
        let mut request = self.inner.http.request(method.clone(), &url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if (path.starts_with("/auth/register") || path == "/auth/challenge")
            && let Some(key) = &self.inner.config.registration_key
        {
            request = request.header("x-registration-key", key);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        // A join code is a credential: errors name its route, not the code.
        let shown = without_code(&url);
        let transport = |source: reqwest::Error| {
            let source = source.without_url();
            if source.is_builder() {
                return ClientError::Config(format!(
                    "cannot build a request to {shown}: {}",
                    crate::error::error_chain(&source)
                ));
            }
            let kind = if is_tls_failure(&source) {
                TransportKind::Tls
            } else if source.is_timeout() {
                TransportKind::Timeout
            } else if source.is_connect() {
                TransportKind::Connect
            } else {
                TransportKind::Interrupted
            };
            ClientError::Transport {
                method: method.to_string(),
                url: shown.clone().into_owned(),
                kind,
                source: TransportError::new(source),
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|source| ClientError::Decode {
                what: format!("{method} {}", without_code(path)),
                source,
            });
        }
        let detail = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => body.detail,
            Err(_) if text.trim().is_empty() => status
                .canonical_reason()
                .unwrap_or("error without detail")
                .to_owned(),
            Err(_) => text.chars().take(200).collect(),
        };
        Err(ClientError::Refused {
            status: status.as_u16(),
            detail,
            retry_after,
        })
    }

    /// Starts (or moves) the heartbeat task to `party_id`.
    fn start_heartbeat(&self, party_id: PartyId) {
        // A weak handle: a client dropped without close() stops its
        // heartbeat instead of being kept alive by it.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        self.inner.heartbeat.start(
            party_id,
            self.inner.config.heartbeat_interval,
            move || weak.upgrade().map(|inner| HttpClient { inner }),
            |client| {
                client.inner.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            },
        );
    }

    /// Stops the heartbeat task (of `party_id` only, when given).
    fn stop_heartbeat(&self, party_id: Option<&PartyId>) {
        self.inner.heartbeat.stop(party_id);
    }
}

/// Host authority (DESIGN, "Capabilities beyond v1", sections 2 and 4):
/// what a server that lists [`HOST_MIGRATION_FEATURE`] offers and the
/// local plane does not, so these are methods of the HTTP client (and of
/// [`RemoteControlPlane`](crate::RemoteControlPlane)), not of
/// [`ControlPlane`]. Each asks the server's `features` once per client, and
/// against a server that does not list host authority fails with
/// [`ClientError::Unsupported`] without sending anything. Refusals are
/// [`ClientError::Refused`] with the server's status and `detail`.
impl HttpClient {
    /// `POST /parties` with `settings`: [`ControlPlane::register_party`]
    /// for a party whose settings differ from the server's defaults (keys
    /// left `None` take them). An empty `settings` is a plain
    /// `register_party`, which any server takes. Retried like a create:
    /// only when the server certainly did not act. A setting out of range
    /// is refused (422).
    ///
    /// ```no_run
    /// use lanrage_client::{HttpClient, HttpConfig, PeerDetails};
    /// use lanrage_client::proto::{HostPolicy, Name, PeerId, PublicKey, SettingsPatch};
    ///
    /// # async fn example() -> Result<(), lanrage_client::ClientError> {
    /// let client = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", PeerId::parse("alice").expect("valid id")))?;
    /// let me = PeerDetails::new(Name::parse("Alice").expect("valid name"), PublicKey::from_bytes(&[7; 32]));
    /// let settings = SettingsPatch {
    ///     host_policy: Some(HostPolicy::Migrate),
    ///     max_members: Some(Some(8)),
    ///     ..SettingsPatch::default()
    /// };
    /// let created = client
    ///     .register_party_with_settings(Name::parse("Friday LAN").expect("valid"), me, settings)
    ///     .await?;
    /// // The party outlives its host: the next present member takes over.
    /// println!("{:?}", created.extras.settings);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_party_with_settings(
        &self,
        name: Name,
        me: PeerDetails,
        settings: SettingsPatch,
    ) -> Result<JoinPartyResponse> {
        let settings = (settings != SettingsPatch::default()).then_some(settings);
        self.create_party(name, me, settings).await
    }

    /// `GET /parties/{id}/settings`: the party's settings (members only).
    pub async fn party_settings(&self, party_id: &PartyId) -> Result<SettingsResponse> {
        let path = format!("/parties/{party_id}/settings");
        self.call_needing(
            HOST_MIGRATION_FEATURE,
            Method::GET,
            &path,
            None::<&()>,
            Resend::Safe,
        )
        .await
    }

    /// `PATCH /parties/{id}/settings`: changes the settings `patch` names
    /// (the host only; 403 for anyone else). Members hear
    /// [`Event::SettingsChanged`](crate::Event::SettingsChanged). Lowering
    /// `max_members` below the member count removes nobody; it stops new
    /// joins. Retried like a read: the same patch twice leaves the same
    /// settings (members may hear it twice).
    pub async fn update_party_settings(
        &self,
        party_id: &PartyId,
        patch: SettingsPatch,
    ) -> Result<SettingsResponse> {
        let path = format!("/parties/{party_id}/settings");
        self.call_needing(
            HOST_MIGRATION_FEATURE,
            Method::PATCH,
            &path,
            Some(&patch),
            Resend::Safe,
        )
        .await
    }

    /// `POST /parties/{id}/host`: hands the party to the member
    /// `new_host_id` (the host only). With `expected_epoch`, the
    /// `host_epoch` the caller last saw (`extras.host_epoch` of a party
    /// read, or of [`WsClient::party`](crate::WsClient::party)), refused
    /// (409) if the host changed since: of two transfers made from one
    /// view, one wins. Members hear
    /// [`Event::HostChanged`](crate::Event::HostChanged) then
    /// [`Event::PartyUpdated`](crate::Event::PartyUpdated).
    ///
    /// Refusals: 403 when this peer is not the host, 404 when
    /// `new_host_id` is not a member, 409 for a stale `expected_epoch`, 422
    /// when `new_host_id` is this peer. Retried only when the server
    /// certainly did not act: after a timeout, read the party to learn
    /// whether the host changed.
    pub async fn transfer_host(
        &self,
        party_id: &PartyId,
        new_host_id: &PeerId,
        expected_epoch: Option<u64>,
    ) -> Result<TransferHostResponse> {
        let path = format!("/parties/{party_id}/host");
        let body = TransferHostRequest {
            new_host_id: new_host_id.clone(),
            expected_epoch,
        };
        self.call_needing(
            HOST_MIGRATION_FEATURE,
            Method::POST,
            &path,
            Some(&body),
            Resend::Unsafe,
        )
        .await
    }

    /// `DELETE /parties/{id}/members/{peer_id}`: removes another member
    /// (the host only). Members and the removed peer hear
    /// [`Event::PeerLeft`](crate::Event::PeerLeft) with reason `kicked`.
    /// With `ban`, that peer (and its bound key) cannot rejoin this party
    /// until it ends.
    ///
    /// Refusals: 403 when this peer is not the host, 404 when `peer_id` is
    /// not a member, 422 when it is this peer (leave instead). Retried
    /// only when the server certainly did not act (a retry of a removal
    /// that happened would read 404).
    pub async fn kick(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<KickResponse> {
        let path = format!("/parties/{party_id}/members/{peer_id}");
        self.call_needing(
            HOST_MIGRATION_FEATURE,
            Method::DELETE,
            &path,
            Some(&KickRequest { ban }),
            Resend::Unsafe,
        )
        .await
    }
}

/// Join codes (DESIGN, "Capabilities beyond v1", section 3): what a server
/// that lists [`INVITES_FEATURE`] offers and the local plane does not, so,
/// like host authority, methods of the HTTP client (and of
/// [`RemoteControlPlane`](crate::RemoteControlPlane)) rather than of
/// [`ControlPlane`]. Each asks the server's `features` once per client, and
/// against a server that does not list `invites` fails with
/// [`ClientError::Unsupported`] without sending anything. Refusals are
/// [`ClientError::Refused`] with the server's status and `detail`.
///
/// A code is read as a person typed it (`frog 7421`, `FROG_7421`,
/// `frog7421`: trimmed, any case, `-`, space, `_` or nothing between the
/// parts) by the rules the server applies (`lanrage_rules::InviteCode`),
/// and sent in its canonical form (`FROG-7421`). One that is not the shape
/// of a code is refused here with the 422 and the `detail` the server
/// would give, before anything is sent; every code that leads nowhere
/// (unknown, expired, used up, revoked, a wrong secret) gets the server's
/// one 404, `"invite code not found or no longer valid"`.
///
/// ```no_run
/// use std::time::Duration;
///
/// use lanrage_client::{HttpClient, HttpConfig, PeerDetails};
/// use lanrage_client::proto::{Name, PartyId, PeerId, PublicKey};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let host = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", PeerId::parse("alice").expect("valid id")))?;
/// let party = PartyId::parse("9f1c0e7a").expect("valid id");
/// let invite = host.create_invite(&party, Some(4), Some(Duration::from_secs(1800))).await?;
/// println!("Join with {}", invite.code); // FROG-7421
///
/// let guest = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", PeerId::parse("bob").expect("valid id")))?;
/// let preview = guest.preview_invite("frog 7421").await?;
/// println!("{} hosted by {}", preview.party_name, preview.host_name);
/// let me = PeerDetails::new(Name::parse("Bob").expect("valid name"), PublicKey::from_bytes(&[9; 32]));
/// let joined = guest.join_by_code("frog 7421", me).await?;
/// println!("in {} on {}", joined.party.party_id, joined.virtual_ip);
/// # Ok(())
/// # }
/// ```
impl HttpClient {
    /// `POST /parties/{id}/invites`: a new join code for the party (the
    /// host only). `max_uses` (1 to 100) and `ttl` (60 s to 7 days, in
    /// whole seconds: a fraction is dropped) default to the server's
    /// settings (10 uses, an hour). Refusals: 403 when this peer is not
    /// the host, 409 when the party already has 20 live invites, 422 for a
    /// limit out of range. Retried only when the server certainly did not
    /// act (a retry could make a second code): after a timeout,
    /// [`HttpClient::invites`] says whether it was made.
    pub async fn create_invite(
        &self,
        party_id: &PartyId,
        max_uses: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<Invite> {
        let path = format!("/parties/{party_id}/invites");
        let body = CreateInviteRequest {
            max_uses,
            ttl_secs: ttl.map(|ttl| ttl.as_secs()),
        };
        let created: InviteResponse = self
            .call_needing(
                INVITES_FEATURE,
                Method::POST,
                &path,
                Some(&body),
                Resend::Unsafe,
            )
            .await?;
        Ok(created.invite)
    }

    /// `GET /parties/{id}/invites`: the party's live invites, oldest first
    /// (the host only).
    pub async fn invites(&self, party_id: &PartyId) -> Result<Vec<Invite>> {
        let path = format!("/parties/{party_id}/invites");
        let listed: InvitesResponse = self
            .call_needing(
                INVITES_FEATURE,
                Method::GET,
                &path,
                None::<&()>,
                Resend::Safe,
            )
            .await?;
        Ok(listed.invites)
    }

    /// `DELETE /parties/{id}/invites/{nameplate}`: ends the live invite
    /// with this nameplate (`frog`, `frog-lamp`, read as leniently as a
    /// code; the host only). Members hear
    /// [`Event::InviteRevoked`](crate::Event::InviteRevoked) with reason
    /// `host`. Refusals: 403 when this peer is not the host, 404 when the
    /// party has no live invite of that name (a name that cannot be a
    /// nameplate is refused so without being sent). Retried like a read:
    /// a retry that finds nothing left to revoke counts as done.
    pub async fn revoke_invite(&self, party_id: &PartyId, nameplate: &str) -> Result<()> {
        let nameplate = nameplate_segment(nameplate)?;
        let path = format!("/parties/{party_id}/invites/{nameplate}");
        let _: Option<StatusResponse> = self
            .call_or_gone(
                Method::DELETE,
                &path,
                None::<&()>,
                Auth::Peer,
                Resend::SafeGoneIsDone,
                Some(INVITES_FEATURE),
            )
            .await?;
        Ok(())
    }

    /// `GET /invites/{code}`: the party a code leads to (its name, host,
    /// member count) and how long and how often the code still works,
    /// without joining. Any peer may ask. A failed look-up counts against
    /// this peer's and this address's budget of failures (429 with
    /// `Retry-After` past it).
    pub async fn preview_invite(&self, code: &str) -> Result<InvitePreview> {
        let path = format!("/invites/{}", code_segment(code)?);
        self.call_needing(
            INVITES_FEATURE,
            Method::GET,
            &path,
            None::<&()>,
            Resend::Safe,
        )
        .await
    }

    /// `POST /invites/{code}/join`: joins the party the code leads to,
    /// exactly as [`ControlPlane::join_party`] joins by ID (the same
    /// answer and events, leaving a previous party, the heartbeat moved to
    /// the new party). A use of the code is spent only when a newcomer's
    /// join succeeds; a member joining again refreshes its info for free.
    /// Refusals: the one 404, 403 (banned), 409 (the party is full).
    /// Retried only when the server certainly did not act, since a join
    /// spends a use: after a timeout, read the party (its ID is in the
    /// preview) to learn whether this peer got in.
    pub async fn join_by_code(&self, code: &str, me: PeerDetails) -> Result<JoinPartyResponse> {
        let path = format!("/invites/{}/join", code_segment(code)?);
        let body = JoinByCodeRequest {
            peer_info: me.into_info(self.own_id().await?),
        };
        let joined: JoinPartyResponse = self
            .call_needing(
                INVITES_FEATURE,
                Method::POST,
                &path,
                Some(&body),
                Resend::Unsafe,
            )
            .await?;
        self.start_heartbeat(joined.party.party_id.clone());
        Ok(joined)
    }
}

/// A typed join code as a path segment: its canonical form (`FROG-7421`)
/// when it reads as a code; as typed, escaped, when it has the shape of
/// one but words the list lacks (the server's one 404 answers it, as for
/// any code that leads nowhere). One without the shape of a code is
/// refused here, as the server would refuse it: 422 and the same detail.
fn code_segment(code: &str) -> Result<String> {
    match InviteCode::parse(code) {
        Ok(code) => Ok(code.reveal()),
        Err(error @ CodeError::Malformed(_)) => Err(ClientError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.to_string(),
        )),
        Err(_) => Ok(escape_segment(code.trim())),
    }
}

/// A nameplate as a path segment, in its stored form (`frog-lamp`). A name
/// that cannot be a nameplate names no live invite: 404, as the server
/// answers it, without sending it (an arbitrary segment could be `..`).
fn nameplate_segment(nameplate: &str) -> Result<String> {
    match Nameplate::parse(nameplate) {
        Ok(nameplate) => Ok(nameplate.to_string()),
        Err(CodeError::Malformed(why)) => Err(ClientError::refused(
            StatusCode::NOT_FOUND,
            format!("{nameplate:?} is not a nameplate: {why}"),
        )),
        Err(_) => Err(ClientError::refused(
            StatusCode::NOT_FOUND,
            format!("{nameplate:?} is not a nameplate: its words are not nameplate words"),
        )),
    }
}

/// `text` with every byte but ASCII letters, digits, `-` and `_`
/// percent-encoded, for a path segment.
fn escape_segment(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

#[async_trait]
impl ControlPlane for HttpClient {
    fn peer_id(&self) -> &PeerId {
        self.inner
            .bound_peer_id
            .get()
            .unwrap_or(&self.inner.config.peer_id)
    }

    async fn register_party(&self, name: Name, me: PeerDetails) -> Result<JoinPartyResponse> {
        self.create_party(name, me, None).await
    }

    async fn join_party(&self, party_id: &PartyId, me: PeerDetails) -> Result<JoinPartyResponse> {
        let body = JoinPartyRequest {
            party_id: party_id.clone(),
            peer_info: me.into_info(self.own_id().await?),
        };
        let path = format!("/parties/{party_id}/join");
        let joined: JoinPartyResponse = self
            .call(Method::POST, &path, Some(&body), Auth::Peer, Resend::Unsafe)
            .await?;
        self.start_heartbeat(joined.party.party_id.clone());
        Ok(joined)
    }

    async fn leave_party(&self, party_id: &PartyId) -> Result<LeaveOutcome> {
        let path = format!("/parties/{party_id}/peers/{}", self.own_id().await?);
        let answer: Option<StatusResponse> = self
            .call_or_gone(
                Method::DELETE,
                &path,
                None::<&()>,
                Auth::Peer,
                Resend::GoneIsDone,
                None,
            )
            .await?;
        self.stop_heartbeat(Some(party_id));
        let Some(answer) = answer else {
            // An earlier attempt left; whether it ended the party shows in
            // whether the party is still there.
            return match self.get_party(party_id).await {
                Err(error) if error.status() == Some(404) => Ok(LeaveOutcome::PartyDeleted),
                _ => Ok(LeaveOutcome::Left),
            };
        };
        match answer.status.as_str() {
            "left" => Ok(LeaveOutcome::Left),
            "party_deleted" => Ok(LeaveOutcome::PartyDeleted),
            other => Err(ClientError::Decode {
                what: format!("DELETE {path}"),
                source: serde::de::Error::custom(format!("unknown status {other:?}")),
            }),
        }
    }

    async fn get_party(&self, party_id: &PartyId) -> Result<PartyResponse> {
        let path = format!("/parties/{party_id}");
        self.call(Method::GET, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await
    }

    async fn get_peers(&self, party_id: &PartyId) -> Result<BTreeMap<PeerId, Peer>> {
        let path = format!("/parties/{party_id}/peers");
        let answer: PeersResponse = self
            .call(Method::GET, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await?;
        Ok(answer.peers)
    }

    async fn discover_peer(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Peer> {
        let path = format!("/parties/{party_id}/peers/{peer_id}");
        let answer: PeerResponse = self
            .call(Method::GET, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await?;
        Ok(answer.peer)
    }

    async fn heartbeat(&self, party_id: &PartyId) -> Result<()> {
        let path = format!(
            "/parties/{party_id}/peers/{}/heartbeat",
            self.own_id().await?
        );
        // Idempotent: beating twice is beating once.
        let _: StatusResponse = self
            .call(Method::POST, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await?;
        Ok(())
    }

    async fn send_signal(
        &self,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: SignalData,
    ) -> Result<()> {
        let path = format!("/parties/{party_id}/signals");
        let body = SendSignalRequest {
            to_peer_id: to_peer_id.clone(),
            signal_data,
        };
        let _: StatusResponse = self
            .call(Method::POST, &path, Some(&body), Auth::Peer, Resend::Unsafe)
            .await?;
        Ok(())
    }

    async fn poll_signals(&self, party_id: &PartyId) -> Result<Vec<Signal>> {
        let path = format!("/parties/{party_id}/signals");
        let answer: SignalsResponse = self
            .call(Method::GET, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await?;
        Ok(answer.signals)
    }

    async fn list_relays(&self) -> Result<Vec<Relay>> {
        let answer: RelaysResponse = self
            .call(
                Method::GET,
                "/relays",
                None::<&()>,
                Auth::Peer,
                Resend::Safe,
            )
            .await?;
        Ok(answer.relays)
    }

    async fn relays_by_region(&self, region: &Region) -> Result<Vec<Relay>> {
        let path = format!("/relays/{region}");
        let answer: RelaysResponse = self
            .call(Method::GET, &path, None::<&()>, Auth::Peer, Resend::Safe)
            .await?;
        Ok(answer.relays)
    }

    async fn close(&self) -> Result<()> {
        self.stop_heartbeat(None);
        Ok(())
    }
}

/// How a client obtains tokens from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// `POST /auth/challenge`, then `/auth/register/key`.
    Key,
    /// `POST /auth/register?peer_id=` (v1).
    Legacy,
}

/// Key proofs when the client has a key and the server can check them
/// (it lists `key-identity`); v1 registration otherwise, so that servers
/// from before key-bound identity keep working.
fn registration_for(server_has_key_identity: bool, has_key: bool) -> Registration {
    if server_has_key_identity && has_key {
        Registration::Key
    } else {
        Registration::Legacy
    }
}

/// A request body as JSON.
fn encode(body: &(impl Serialize + ?Sized)) -> Result<Vec<u8>> {
    serde_json::to_vec(body)
        .map_err(|e| ClientError::Config(format!("cannot encode the request body: {e}")))
}

/// A `Retry-After` value: seconds, or an HTTP date (IMF-fixdate, as
/// `Sun, 06 Nov 1994 08:49:37 GMT`; a date in the past is no wait). The
/// obsolete RFC 850 and asctime date forms are not understood and are
/// treated as no `Retry-After`.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of an IMF-fixdate.
fn parse_http_date(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let _weekday = parts.next().filter(|w| w.ends_with(','))?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the epoch to the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_info(json: &str) -> ServiceInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn key_proofs_only_where_the_server_lists_key_identity() {
        let base = r#""service":"LANrage Control Plane","version":"0.1.0","status":"ok","parties":0,"relays":0"#;
        for (json, listed) in [
            // A server from before the features list.
            (format!("{{{base}}}"), false),
            (format!(r#"{{{base},"features":[]}}"#), false),
            (
                format!(r#"{{{base},"features":["invites","path-plan"]}}"#),
                false,
            ),
            (
                format!(r#"{{{base},"features":["key-identity-v2"]}}"#),
                false,
            ),
            (
                format!(r#"{{{base},"features":["invites","key-identity"]}}"#),
                true,
            ),
        ] {
            let info = service_info(&json);
            assert_eq!(info.has_feature(KEY_IDENTITY_FEATURE), listed, "{json}");
            let with_key = registration_for(info.has_feature(KEY_IDENTITY_FEATURE), true);
            let expected = if listed {
                Registration::Key
            } else {
                Registration::Legacy
            };
            assert_eq!(with_key, expected, "{json}");
            // A client with a peer ID alone keeps v1 registration anywhere.
            assert_eq!(
                registration_for(info.has_feature(KEY_IDENTITY_FEATURE), false),
                Registration::Legacy,
                "{json}"
            );
        }
    }

    #[test]
    fn codes_travel_in_canonical_form_and_non_codes_stay_home() {
        assert_eq!(
            code_segment("  frog 7421\n").ok().as_deref(),
            Some("FROG-7421")
        );
        assert_eq!(
            code_segment("frog_lamp0042").ok().as_deref(),
            Some("FROG-LAMP-0042")
        );
        // The shape of a code but not list words: the server's 404 says so.
        assert_eq!(
            code_segment(" zzzzq 1234 ").ok().as_deref(),
            Some("zzzzq%201234")
        );
        for malformed in ["", "..", "frog/7421", "FROG-74", "FR\u{41E}G-7421"] {
            let error = code_segment(malformed).unwrap_err();
            assert_eq!(error.status(), Some(422), "{malformed:?}");
            assert!(!error.is_retryable());
        }
        assert_eq!(
            nameplate_segment("FROG LAMP").ok().as_deref(),
            Some("frog-lamp")
        );
        for not_one in ["..", "frog/lamp", "zzzzq", ""] {
            assert_eq!(
                nameplate_segment(not_one).unwrap_err().status(),
                Some(404),
                "{not_one:?}"
            );
        }
        assert_eq!(escape_segment("a b/.%é"), "a%20b%2F%2E%25%C3%A9");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        // In the past: no wait.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let future = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").unwrap_or_default();
        assert!(
            future > Duration::from_secs(86_400 * 365 * 50),
            "{future:?}"
        );
        for bad in [
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "-1",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }
}

/// `url` (or a path) with the code of a `/invites/{code}` route hidden:
/// what errors may show of a request.
fn without_code(url: &str) -> std::borrow::Cow<'_, str> {
    match url.find("/invites/") {
        Some(at) => {
            let rest = &url[at + "/invites/".len()..];
            let after = rest.find('/').map_or("", |end| &rest[end..]);
            format!("{}/invites/{{code}}{after}", &url[..at]).into()
        }
        None => url.into(),
    }
}

#[cfg(test)]
mod code_hiding {
    #[test]
    fn errors_never_show_a_join_code() {
        assert_eq!(
            super::without_code("http://h:1/invites/FROG-7421/join"),
            "http://h:1/invites/{code}/join"
        );
        assert_eq!(super::without_code("/invites/FROG-7421"), "/invites/{code}");
        assert_eq!(
            super::without_code("http://h:1/parties/p/invites/frog"),
            "http://h:1/parties/p/invites/{code}"
        );
        assert_eq!(super::without_code("/parties/p"), "/parties/p");
    }
}
