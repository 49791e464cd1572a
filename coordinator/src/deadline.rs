//! A TLS connection with deadlines of its own, so that a peer that holds a
//! connection without using it costs a file descriptor for seconds, not
//! forever: every connection must start HTTP/2 (its first bytes) within the
//! preface deadline, and one without a client certificate (it can only
//! enroll or ask for health) is closed at the end of its lifetime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// How long a connection may go before each deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDeadlines {
    /// From the end of the handshake to the first bytes of HTTP/2.
    pub preface: Duration,
    /// The whole life of a connection without a client certificate.
    pub unauthenticated: Duration,
}

impl Default for ConnectionDeadlines {
    /// 10 s for a preface that a client sends at once; a minute is more than
    /// an enrollment needs (one call) and than a health probe holds.
    fn default() -> Self {
        Self {
            preface: Duration::from_secs(10),
            unauthenticated: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
enum Deadline {
    /// Until the first byte is read.
    Preface,
    /// Until the connection closes.
    Lifetime,
}

/// `inner`, refusing to be read once its deadline has passed.
#[derive(Debug)]
pub struct Deadlined<T> {
    inner: T,
    deadline: Option<(Deadline, Pin<Box<Sleep>>)>,
    /// When the lifetime ends once the preface has come, if it is limited.
    lifetime_ends: Option<Instant>,
}

impl<T> Deadlined<T> {
    /// `authenticated`: whether the peer presented a client certificate.
    pub fn new(inner: T, authenticated: bool, deadlines: ConnectionDeadlines) -> Self {
        let now = Instant::now();
        let preface = Box::pin(tokio::time::sleep_until(now + deadlines.preface));
        Self {
            inner,
            deadline: Some((Deadline::Preface, preface)),
            lifetime_ends: (!authenticated).then_some(now + deadlines.unauthenticated),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlined<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((which, sleep)) = &mut self.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let what = match which {
                Deadline::Preface => "no HTTP/2 preface before the deadline",
                Deadline::Lifetime => "a connection without a client certificate outlived its time",
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.preface_arrived();
        }
        read
    }
}

impl<T> Deadlined<T> {
    fn preface_arrived(&mut self) {
        if matches!(self.deadline, Some((Deadline::Preface, _))) {
            self.deadline = self
                .lifetime_ends
                .map(|end| (Deadline::Lifetime, Box::pin(tokio::time::sleep_until(end))));
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlined<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<T: Connected> Connected for Deadlined<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: ConnectionDeadlines = ConnectionDeadlines {
        preface: Duration::from_millis(100),
        unauthenticated: Duration::from_millis(400),
    };

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_preface_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let mut server = Deadlined::new(server, true, SHORT);
        let mut byte = [0u8; 1];
        let err = server.read(&mut byte).await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("no HTTP/2 preface"), "{err}");
    }

    #[tokio::test]
    async fn an_authenticated_connection_that_spoke_lives_on() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Deadlined::new(server, true, SHORT);
        let mut byte = [0u8; 1];
        client.write_all(b"P").await.expect("write");
        server.read_exact(&mut byte).await.expect("the preface");
        tokio::time::sleep(SHORT.unauthenticated * 2).await;
        client.write_all(b"R").await.expect("write");
        server.read_exact(&mut byte).await.expect("still open");
        assert_eq!(&byte, b"R");
    }

    #[tokio::test]
    async fn a_connection_without_a_certificate_is_closed_at_the_end_of_its_lifetime() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Deadlined::new(server, false, SHORT);
        let mut byte = [0u8; 1];
        client.write_all(b"P").await.expect("write");
        server.read_exact(&mut byte).await.expect("the preface");
        // Past the preface deadline it still reads; past its lifetime, no more.
        tokio::time::sleep(SHORT.preface * 2).await;
        client.write_all(b"E").await.expect("write");
        server.read_exact(&mut byte).await.expect("enrolling");
        let err = server.read(&mut byte).await.expect_err("closed");
        assert!(err.to_string().contains("outlived"), "{err}");
    }
}
