//! A fault-injecting TCP proxy: one listener per directed link, forwarding every accepted
//! connection to the link's target.
//!
//! Each node reaches each other node's peer listener through a link of its own (node i's
//! `cluster.voters` names, for node j, the address of link i -> j), and clients reach each
//! node through a link whose address is the node's `advertised.listener`, so Metadata sends
//! clients through it too. Cutting a link resets its open connections and answers every new
//! one with a reset at once (zero linger), which a node sees as the refusal a dead peer's
//! host gives; healing closes nothing and lets connections be made again. The peer protocol
//! sends each direction on its own connection, so cutting link i -> j alone is a one-way
//! partition.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One directed link: a listener on loopback that forwards to `target` while it is up.
#[derive(Debug)]
pub struct Link {
    /// Where the link listens.
    pub listen: SocketAddr,
    /// Where it forwards to.
    pub target: SocketAddr,
    up: watch::Sender<bool>,
    stats: Arc<LinkStats>,
}

/// What a link did.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections forwarded.
    pub forwarded: AtomicU64,
    /// Connections refused (reset at once) while the link was cut.
    pub refused: AtomicU64,
    /// Open connections reset when the link was cut.
    pub reset: AtomicU64,
}

impl Link {
    /// Binds a new link on a free loopback port, forwarding to `target`, and starts it.
    pub async fn start(target: SocketAddr) -> io::Result<Link> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let listen = listener.local_addr()?;
        let (up, _) = watch::channel(true);
        let stats = Arc::new(LinkStats::default());
        tokio::spawn(accept_loop(listener, target, up.subscribe(), Arc::clone(&stats)));
        Ok(Link { listen, target, up, stats })
    }

    /// Cuts (`false`) or heals (`true`) the link.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// What the link did so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    up: watch::Receiver<bool>,
    stats: Arc<LinkStats>,
) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: try again
                // shortly rather than spin.
                tracing_free_log(&error);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if !*up.borrow() {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            continue;
        }
        tokio::spawn(forward(inbound, target, up.clone(), Arc::clone(&stats)));
    }
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut up: watch::Receiver<bool>,
    stats: Arc<LinkStats>,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        // The target is down (killed): the client sees the refusal it would have seen.
        reset(inbound);
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        () = cut(&mut up) => {
            stats.reset.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            reset(outbound);
        }
    }
}

/// Resolves once the link is cut (at once if it already is).
async fn cut(up: &mut watch::Receiver<bool>) {
    loop {
        if !*up.borrow_and_update() {
            return;
        }
        if up.changed().await.is_err() {
            // The link is gone with the harness: never resolve.
            std::future::pending::<()>().await;
        }
    }
}

/// Closes a connection with a reset rather than a graceful close.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn tracing_free_log(error: &io::Error) {
    eprintln!("cairn-jepsen: a proxy could not accept a connection: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_link_forwards_while_up_refuses_while_cut_and_heals() {
        let link = Link::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(link.listen).await.unwrap(), b"ping");

        let mut open = TcpStream::connect(link.listen).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        link.set_up(false);
        // The open connection is reset, and new ones are refused.
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), open.read_to_end(&mut rest))
                .await
                .expect("the cut must close the open connection");
        assert!(read.is_err() || rest.is_empty(), "{read:?}");
        assert!(round_trip(link.listen).await.is_err());
        assert!(link.stats().refused.load(Ordering::Relaxed) >= 1);

        link.set_up(true);
        assert_eq!(round_trip(link.listen).await.unwrap(), b"ping");
    }
}
