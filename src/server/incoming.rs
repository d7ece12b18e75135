//! What the server hands the edge besides the head: the client's body and, for a WebSocket
//! handshake, the client's side of the upgrade. HTTP/1.1 connections are Gantry's own
//! ([`super::h1`]); HTTP/2 connections are hyper's, so both types have a variant for each.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::h1::H1RequestBody;

/// A byte stream a connection can be handed over as (boxed once per connection).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed client stream.
pub type BoxIo = Box<dyn Io>;

/// The client's request body.
pub enum ClientBody {
    /// No body (framing said so).
    Empty,
    /// Read from an HTTP/1.1 connection by Gantry's server.
    H1(H1RequestBody),
    /// An HTTP/2 stream's body, from hyper.
    H2(Incoming),
}

/// Why reading the client's body failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::H1(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|err| ClientBodyError(Box::new(err))),
            Self::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|err| ClientBodyError(Box::new(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::H1(body) => body.is_end_stream(),
            Self::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::H1(body) => body.size_hint(),
            Self::H2(body) => body.size_hint(),
        }
    }
}

/// The connection of an HTTP/1.1 request that asked to upgrade, delivered once the `101` is out.
/// (Request extensions must be `Clone`; the receiver is taken out once.)
#[derive(Clone)]
pub(super) struct H1UpgradeSlot(pub Arc<Mutex<Option<oneshot::Receiver<BoxIo>>>>);

/// The client's side of an upgrade, available once the `101` has been written.
pub enum ClientUpgrade {
    /// Gantry's HTTP/1.1 server hands over the connection.
    H1(oneshot::Receiver<BoxIo>),
    /// hyper's.
    Hyper(hyper::upgrade::OnUpgrade),
}

impl ClientUpgrade {
    /// Takes the upgrade handle out of the request (once).
    pub fn take_from(req: &mut Request<ClientBody>) -> Self {
        let slot = req.extensions_mut().remove::<H1UpgradeSlot>();
        match slot.and_then(|H1UpgradeSlot(slot)| slot.lock().ok()?.take()) {
            Some(receiver) => Self::H1(receiver),
            None => Self::Hyper(hyper::upgrade::on(req)),
        }
    }

    /// The client's stream, with any bytes it sent after its request in front.
    pub async fn upgraded(self) -> io::Result<BoxIo> {
        match self {
            Self::H1(receiver) => receiver.await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the upgrade was not completed",
                )
            }),
            Self::Hyper(on_upgrade) => match on_upgrade.await {
                Ok(upgraded) => Ok(Box::new(TokioIo::new(upgraded))),
                Err(err) => Err(io::Error::other(err)),
            },
        }
    }
}
