//! A TCP listener whose connections a handler can cut without a response, for the fake's
//! `Failure::DropConnection`.
//!
//! Each accepted stream shares a flag with the [`Connection`] handle that handlers receive as
//! connect info. Once a handler sets the flag, reads and writes on the stream fail, so the
//! server gives up on writing the response and drops the socket: the client sees the
//! connection close before any byte of a response.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub(super) struct CuttableListener(pub(super) TcpListener);

/// Connect info of one connection, which a handler uses to cut it.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    cut: Arc<AtomicBool>,
}

impl Connection {
    /// Makes every later read and write on the connection fail.
    pub(super) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = Connection;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // An accept error (such as running out of file descriptors) is retried, as
            // axum's own TcpListener does, because the fake has no one to report it to.
            if let Ok((stream, _peer)) = self.0.accept().await {
                let cut = Arc::new(AtomicBool::new(false));
                let connection = Connection { cut: cut.clone() };
                return (CuttableStream { stream, cut }, connection);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(|_: SocketAddr| Connection {
            cut: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(super) struct CuttableStream {
    stream: TcpStream,
    cut: Arc<AtomicBool>,
}

impl CuttableStream {
    fn fail_if_cut(&self) -> io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by an injected failure",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.fail_if_cut()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.fail_if_cut()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.fail_if_cut()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
