//! A client's TCP connection as the HTTP stack and the WebSocket channel
//! use it: it holds its address's connection slot for as long as it lives,
//! notes when a request head starts arriving (for the header timeout), and
//! can be aborted from outside (a slow reader's socket), which fails every
//! pending read and write at once and resets the connection, so neither
//! our buffers nor the kernel's send buffer stay held by a client that
//! does not read.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::task::AtomicWaker;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

use super::{ClientKey, counts::AddressSlot};

/// No request head has started arriving.
const NO_HEAD: u64 = u64::MAX;

/// What the connection's I/O and its HTTP watchdog share.
#[derive(Debug)]
pub(super) struct Shared {
    peer: SocketAddr,
    aborted: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
    /// Written (if the socket takes it at once) just before a plain
    /// connection closes: the 408 of a header timeout.
    goodbye: OnceLock<&'static [u8]>,
    /// A send buffer size asked for by the connection's user, applied by
    /// the I/O before its next write (0: none pending).
    send_buffer: AtomicUsize,
    pub(super) activity: Activity,
}

/// Where the connection stands between requests, in milliseconds since it
/// was accepted.
#[derive(Debug)]
pub(super) struct Activity {
    born: Instant,
    pub(super) in_flight: AtomicUsize,
    pub(super) requests: AtomicU64,
    idle_since_ms: AtomicU64,
    head_started_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NO_HEAD),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    pub(super) fn accepted_at(&self) -> Instant {
        self.born
    }

    /// Bytes came in: between requests, they are the start of a head.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                NO_HEAD,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// A complete head was parsed and handed to the application.
    pub(super) fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NO_HEAD, Ordering::Release);
    }

    /// The application answered (or the request was dropped).
    pub(super) fn request_ended(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the next request's head started arriving, if it has.
    pub(super) fn head_started(&self) -> Option<u64> {
        let ms = self.head_started_ms.load(Ordering::Acquire);
        (ms != NO_HEAD).then_some(ms)
    }

    pub(super) fn idle_since(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Acquire)
    }
}

/// A handle on one client connection, in every request's extensions
/// (`Extension<Connection>`), so the WebSocket channel can abort the
/// connection under an upgraded socket.
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// The client's address (the TCP peer).
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The key per-address bounds count this connection under.
    pub fn key(&self) -> ClientKey {
        ClientKey::of(self.shared.peer.ip())
    }

    /// Fails every pending and later read and write at once; when the I/O
    /// is dropped (its users see the errors and let go) the socket is
    /// reset, discarding whatever the kernel still holds to send.
    pub fn abort(&self) {
        self.shared.aborted.store(true, Ordering::Release);
        self.shared.read_waker.wake();
        self.shared.write_waker.wake();
    }

    /// Fixes the kernel's send buffer at about `bytes` (Linux doubles it
    /// for bookkeeping) instead of letting it grow to megabytes: what a
    /// client that stops reading can make the kernel hold for it. Applied
    /// before the connection's next write.
    pub fn limit_send_buffer(&self, bytes: usize) {
        self.shared.send_buffer.store(bytes, Ordering::Release);
    }

    pub fn is_aborted(&self) -> bool {
        self.shared.aborted.load(Ordering::Acquire)
    }

    /// Closes the connection after writing `bytes` if the socket takes
    /// them at once (plain connections only: TLS would need a handshake's
    /// worth of state at close).
    pub(super) fn close_with(&self, bytes: &'static [u8]) {
        let _ = self.shared.goodbye.set(bytes);
        self.abort();
    }

    pub(super) fn activity(&self) -> &Activity {
        &self.shared.activity
    }
}

/// Keeps the open-connection gauge true whichever way a connection ends.
#[derive(Debug)]
pub(super) struct Open(pub(super) prometheus_client::metrics::gauge::Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The connection's socket.
#[derive(Debug)]
pub struct ClientIo {
    tcp: TcpStream,
    /// False under TLS, where no plaintext may be written past the session.
    plain: bool,
    shared: Arc<Shared>,
    _slot: AddressSlot,
    _open: Open,
}

impl ClientIo {
    pub(super) fn new(
        tcp: TcpStream,
        peer: SocketAddr,
        plain: bool,
        slot: AddressSlot,
        open: Open,
    ) -> Self {
        Self {
            tcp,
            plain,
            shared: Arc::new(Shared {
                peer,
                aborted: AtomicBool::new(false),
                read_waker: AtomicWaker::new(),
                write_waker: AtomicWaker::new(),
                goodbye: OnceLock::new(),
                send_buffer: AtomicUsize::new(0),
                activity: Activity::new(),
            }),
            _slot: slot,
            _open: open,
        }
    }

    pub fn handle(&self) -> Connection {
        Connection {
            shared: self.shared.clone(),
        }
    }

    fn aborted(&self) -> bool {
        self.shared.aborted.load(Ordering::Acquire)
    }

    fn apply_send_buffer(&self) {
        let bytes = self.shared.send_buffer.swap(0, Ordering::AcqRel);
        if bytes > 0
            && let Err(error) = socket2::SockRef::from(&self.tcp).set_send_buffer_size(bytes)
        {
            tracing::debug!(%error, "cannot limit a connection's send buffer");
        }
    }
}

fn aborted_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection aborted")
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shared.read_waker.register(cx.waker());
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.shared.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.shared.write_waker.register(cx.waker());
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        this.apply_send_buffer();
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.shared.write_waker.register(cx.waker());
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        this.apply_send_buffer();
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shared.write_waker.register(cx.waker());
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        if let Some(goodbye) = self.shared.goodbye.get()
            && self.plain
        {
            // A best effort: an idle socket's send buffer is empty, so a
            // short answer fits; the close after it is an orderly one.
            let _ = self.tcp.try_write(goodbye);
        } else if self.aborted() {
            // Linger 0: close() resets the connection and frees its send
            // buffer now, instead of retrying it to a client that never reads.
            let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        }
    }
}
