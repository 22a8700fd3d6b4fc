//! Targets (`unix:/path` or `host:port`) and the connector tonic dials them with: a tokio
//! `UnixStream` or `TcpStream` (no Nagle), counted while open so that the client knows
//! whether it is connected.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tonic::codegen::http::Uri;

use crate::Error;

/// Where the sidecar listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Unix(String),
    Tcp { host: String, port: u16 },
}

impl Target {
    /// `unix:/path`, `unix:///path`, `unix:relative/path`, `host:port`, `[v6]:port`, or
    /// `http://host:port` / `https://host:port`; the second value is whether an `https://`
    /// scheme asked for TLS.
    pub(crate) fn parse(text: &str) -> Result<(Target, bool), Error> {
        let bad = |why: &str| Error::InvalidTarget(format!("{text:?}: {why}"));
        if let Some(rest) = text.strip_prefix("unix:") {
            let path = match rest.strip_prefix("//") {
                Some(absolute) if absolute.starts_with('/') => absolute,
                Some(_) => return Err(bad("expected unix:/path or unix:///path")),
                None => rest,
            };
            if path.is_empty() {
                return Err(bad("no socket path"));
            }
            return Ok((Target::Unix(path.to_string()), false));
        }
        let (address, https) = if let Some(rest) = text.strip_prefix("https://") {
            (rest, true)
        } else {
            (text.strip_prefix("http://").unwrap_or(text), false)
        };
        let address = address.strip_suffix('/').unwrap_or(address);
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains('/') {
            return Err(bad("bad host"));
        }
        Ok((
            Target::Tcp {
                host: host.to_string(),
                port,
            },
            https,
        ))
    }

    /// The URI tonic is given (its scheme says whether to use TLS, its host is the TLS name
    /// unless one is set); the connector dials `self` whatever the URI says.
    pub(crate) fn uri(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        match self {
            Target::Unix(_) => format!("{scheme}://localhost"),
            Target::Tcp { host, port } if host.contains(':') => {
                format!("{scheme}://[{host}]:{port}")
            }
            Target::Tcp { host, port } => format!("{scheme}://{host}:{port}"),
        }
    }

    pub(crate) async fn dial(&self, timeout: Duration) -> io::Result<Io> {
        let connect = async {
            Ok::<_, io::Error>(match self {
                Target::Unix(path) => Io::Unix(UnixStream::connect(path).await?),
                Target::Tcp { host, port } => {
                    let stream = TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Io::Tcp(stream)
                }
            })
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )),
        }
    }
}

pub(crate) enum Io {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection, counted in `live` while it is open (hyper drops it when it ends).
pub(crate) struct Counted {
    io: Io,
    live: Arc<AtomicUsize>,
}

impl Counted {
    pub(crate) fn new(io: Io, live: Arc<AtomicUsize>) -> Counted {
        live.fetch_add(1, Ordering::SeqCst);
        Counted { io, live }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tcp(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The `tower::Service<Uri>` that tonic's `Endpoint::connect_with_connector_lazy` calls
/// for every connection it makes (it ignores the URI: it dials its target).
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) target: Arc<Target>,
    pub(crate) timeout: Duration,
    pub(crate) live: Arc<AtomicUsize>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Counted>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Counted>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (target, timeout, live) = (self.target.clone(), self.timeout, self.live.clone());
        Box::pin(async move {
            let io = target.dial(timeout).await?;
            Ok(TokioIo::new(Counted::new(io, live)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let unix = |p: &str| Ok((Target::Unix(p.into()), false));
        let tcp = |h: &str, port, tls| {
            Ok((
                Target::Tcp {
                    host: h.into(),
                    port,
                },
                tls,
            ))
        };
        assert_eq!(Target::parse("unix:/tmp/ess.sock"), unix("/tmp/ess.sock"));
        assert_eq!(Target::parse("unix:///tmp/ess.sock"), unix("/tmp/ess.sock"));
        assert_eq!(Target::parse("unix:ess.sock"), unix("ess.sock"));
        assert_eq!(
            Target::parse("127.0.0.1:50051"),
            tcp("127.0.0.1", 50051, false)
        );
        assert_eq!(
            Target::parse("http://localhost:1/"),
            tcp("localhost", 1, false)
        );
        assert_eq!(
            Target::parse("https://ess.example:443"),
            tcp("ess.example", 443, true)
        );
        assert_eq!(Target::parse("[::1]:7"), tcp("::1", 7, false));
        assert_eq!(
            Target::Tcp {
                host: "::1".into(),
                port: 7
            }
            .uri(false),
            "http://[::1]:7"
        );
        for bad in [
            "unix:",
            "unix://relative",
            "localhost",
            "host:port",
            ":80",
            "a:99999",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
