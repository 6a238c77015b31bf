//! A TCP listener whose connections a handler can close without sending a response, for the
//! `DropConnection` failure.
//!
//! Each accepted stream shares a close flag with the [`ConnectionHandle`] that handlers get as
//! connect info. Once the flag is set, every read and write on the stream fails, so hyper
//! abandons the connection when it tries to write the response and drops the socket. The
//! client sees the connection close before any response bytes.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed `accept`, such as when the process is out of file descriptors.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

pub(crate) struct ClosableListener {
    inner: TcpListener,
}

impl ClosableListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for ClosableListener {
    type Io = ClosableStream;
    type Addr = ConnectionHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let closed = Arc::new(AtomicBool::new(false));
                    let handle = ConnectionHandle {
                        peer,
                        closed: closed.clone(),
                    };
                    return (ClosableStream { stream, closed }, handle);
                }
                Err(error) => {
                    tracing::warn!(%error, "fake Mailchimp failed to accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnectionHandle {
            peer: self.inner.local_addr()?,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// The connect info of one connection: its peer address and its close flag.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle {
    pub peer: SocketAddr,
    closed: Arc<AtomicBool>,
}

impl ConnectionHandle {
    /// Makes all further IO on the connection fail, so it closes without a response.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, ClosableListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, ClosableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(crate) struct ClosableStream {
    stream: TcpStream,
    closed: Arc<AtomicBool>,
}

impl ClosableStream {
    fn check_open(&self) -> io::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by an injected failure",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for ClosableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(error) = self.check_open() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.check_open() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.check_open() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(error) = self.check_open() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
