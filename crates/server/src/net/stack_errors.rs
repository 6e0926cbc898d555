//! The HTTP stack (hyper) answers requests it cannot parse by itself, with
//! a status and an empty body: 400 for a malformed request, 414 for a URI
//! too long, 431 for header fields too large. Every error of this API
//! carries `{"detail"}`, so this wrapper, between hyper and the socket,
//! gives those answers the same body. Handlers never answer these statuses
//! with an empty body, so only the stack's answers match.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";

/// The body the stack's bodiless answer of `status` gets.
fn detail(status: &[u8]) -> Option<&'static str> {
    Some(match status {
        b"400" => r#"{"detail":"malformed HTTP request"}"#,
        b"408" => r#"{"detail":"request not received in time"}"#,
        b"413" => r#"{"detail":"request too large"}"#,
        b"414" => r#"{"detail":"request URI too long"}"#,
        b"431" => r#"{"detail":"request header fields too large"}"#,
        _ => return None,
    })
}

/// `head` with a JSON `{"detail"}` body, if it is one of the stack's
/// bodiless error answers.
fn with_detail(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = detail(&head[9..12])?;
    let at = head
        .windows(EMPTY.len())
        .position(|w| w.eq_ignore_ascii_case(EMPTY))?;
    let mut answer = Vec::with_capacity(head.len() + body.len() + 64);
    answer.extend_from_slice(&head[..at]);
    answer.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(&head[at + EMPTY.len()..]);
    answer.extend_from_slice(body.as_bytes());
    Some(answer)
}

/// A connection whose stack-level error answers carry a `{"detail"}` body.
#[derive(Debug)]
pub struct StackErrors<S> {
    inner: S,
    /// A rewritten answer not yet fully written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> StackErrors<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> StackErrors<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StackErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StackErrors<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(answer) = with_detail(buf) {
            // The stack's bytes are taken whole; the rewritten answer goes
            // out on this and the following polls (flush or shutdown).
            this.pending = Some((answer, 0));
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    // Not vectored: the stack then writes each head as one buffer, which
    // is what the rewrite looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stacks_bodiless_errors_get_a_detail() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 17:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(with_detail(head).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, r#"{"detail":"request header fields too large"}"#);
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("date: Mon"), "{head}");
    }

    #[test]
    fn other_answers_pass_untouched() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{\"detail\"}",
            b"\x81\x05hello",
        ] {
            assert!(with_detail(bytes).is_none(), "{bytes:?}");
        }
    }
}
