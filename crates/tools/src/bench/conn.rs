//! One HTTP/1.1 keep-alive connection per in-flight request, straight on hyper's
//! connection API: no pool, no per-request allocation beyond the request itself.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::record::Failure;
use super::BenchError;

pub type Sender = SendRequest<Full<Bytes>>;

/// Where the requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// The path of the URL as given (`/` when it had none).
    pub path: String,
    /// The `Host` header.
    pub authority: HeaderValue,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses an `http://` URL and resolves its host.
    pub async fn resolve(url: &str) -> Result<Target, BenchError> {
        let bad = |why: &str| BenchError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// targets are supported")),
            None => return Err(bad("no scheme; write http://host:port")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| bad("host resolves to no address"))?;
        let authority_value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?;
        let path = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => pq.as_str().to_string(),
            _ => "/".to_string(),
        };
        Ok(Target {
            base: format!("http://{}", authority.as_str()),
            path,
            authority: authority_value,
            addr,
        })
    }
}

/// Connects and performs the HTTP/1.1 handshake within `timeout`.
async fn open(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(Sender, Connection<TokioIo<TcpStream>, Full<Bytes>>), Failure> {
    let open = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|_| Failure::Connect)?;
        // Small requests and answers: Nagle would add delay, not save packets.
        tcp.set_nodelay(true).map_err(|_| Failure::Connect)?;
        hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| Failure::Connect)
    };
    match tokio::time::timeout(timeout, open).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

/// Opens a connection and spawns its driver on the current runtime.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, Failure> {
    let (sender, conn) = open(addr, timeout).await?;
    tokio::spawn(async move {
        // A connection error surfaces to the request through the sender.
        let _ = conn.await;
    });
    Ok(sender)
}

/// A connection whose driver is polled by the task that sends on it, instead of being a
/// task of its own: one task wake-up per answer instead of two (the closed loop's hot
/// path).
pub struct Inline {
    sender: Sender,
    conn: std::pin::Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    ended: bool,
}

impl Inline {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Inline, Failure> {
        let (sender, conn) = open(addr, timeout).await?;
        Ok(Inline {
            sender,
            conn: Box::pin(conn),
            ended: false,
        })
    }

    /// False once the connection has ended or failed a request.
    pub fn usable(&self) -> bool {
        !self.ended
    }

    /// [`exchange`], driving the connection meanwhile.
    pub async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<u16, Failure> {
        if self.ended {
            return Err(Failure::Io);
        }
        let ex = exchange(&mut self.sender, req);
        tokio::pin!(ex);
        tokio::select! {
            biased;
            r = &mut ex => {
                self.ended |= r.is_err();
                return r;
            }
            _ = self.conn.as_mut() => {}
        }
        // The connection ended (e.g. the server closed it after this answer): what it
        // delivered is final, and the connection must not be polled again.
        self.ended = true;
        ex.await
    }
}

/// Opens a connection, as an error for setup (the preflight check).
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), BenchError> {
    connect(addr, timeout)
        .await
        .map(|_| ())
        .map_err(|f| BenchError::Unreachable {
            addr,
            why: format!("{f:?}"),
        })
}

/// Sends one request and reads the whole answer, so the connection can carry the next.
/// An error means the connection is no longer usable.
pub async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<u16, Failure> {
    sender.ready().await.map_err(|_| Failure::Io)?;
    let resp = sender.send_request(req).await.map_err(|_| Failure::Io)?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| Failure::Io)?;
    }
    Ok(status)
}

/// [`exchange`] with a timeout.
pub async fn exchange_within(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<u16, Failure> {
    match tokio::time::timeout(timeout, exchange(sender, req)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}
