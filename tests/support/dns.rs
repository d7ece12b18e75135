//! A tiny authoritative DNS server over UDP on 127.0.0.1:0, for discovery tests: A and SRV
//! records set at run time, a switch that makes it answer SERVFAIL, and a query counter.
//! Enough of RFC 1035 for one question per query; anything it has no record for is an empty
//! NOERROR answer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

/// Record data by (lowercase name, record type).
type Records = HashMap<(String, u16), Vec<Vec<u8>>>;

#[derive(Default)]
struct Zone {
    records: Mutex<Records>,
    failing: AtomicBool,
    silent: AtomicBool,
    queries: AtomicUsize,
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Binds 127.0.0.1:0 (UDP) and serves; ready when this returns.
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS socket");
        let addr = socket.local_addr().expect("DNS local addr");
        let zone = Arc::new(Zone::default());
        let task = tokio::spawn(serve(socket, Arc::clone(&zone)));
        DnsServer { addr, zone, task }
    }

    /// Like [`DnsServer::start`], plus a TCP listener on the same port (resolvers fall back to
    /// TCP there). The UDP port is picked by the OS, so its TCP twin may already be taken by some
    /// other socket: retry with a fresh port until both are ours.
    pub async fn start_with_tcp() -> (DnsServer, tokio::net::TcpListener) {
        for _ in 0..100 {
            let server = DnsServer::start().await;
            if let Ok(tcp) = tokio::net::TcpListener::bind(server.addr()).await {
                return (server, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP after 100 tries");
    }

    /// `IP:PORT` of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the A records of `name` (no trailing dot); an empty list removes them.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let rdata = ips.iter().map(|ip| ip.octets().to_vec()).collect();
        self.set(name, TYPE_A, rdata);
    }

    /// Sets the SRV records of `name`: `(priority, weight, port, target)`.
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let rdata = records
            .iter()
            .map(|(priority, weight, port, target)| {
                let mut data = Vec::new();
                data.extend_from_slice(&priority.to_be_bytes());
                data.extend_from_slice(&weight.to_be_bytes());
                data.extend_from_slice(&port.to_be_bytes());
                data.extend(encode_name(target));
                data
            })
            .collect();
        self.set(name, TYPE_SRV, rdata);
    }

    /// While `failing`, every query is answered SERVFAIL.
    pub fn set_failing(&self, failing: bool) {
        self.zone.failing.store(failing, Ordering::SeqCst);
    }

    /// While `silent`, queries get no answer at all (a lookup hangs until the resolver gives up).
    pub fn set_silent(&self, silent: bool) {
        self.zone.silent.store(silent, Ordering::SeqCst);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.zone.queries.load(Ordering::SeqCst)
    }

    /// Waits until more than `seen` queries were answered (10 s safety net).
    pub async fn wait_for_queries_after(&self, seen: usize) {
        for _ in 0..1000 {
            if self.queries() > seen {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("safety net: no DNS query after {seen}");
    }

    fn set(&self, name: &str, kind: u16, rdata: Vec<Vec<u8>>) {
        let mut records = self
            .zone
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        records.insert((name.to_ascii_lowercase(), kind), rdata);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

async fn serve(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if zone.silent.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(reply) = answer(&buf[..n], &zone) {
            zone.queries.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The reply to one query, or `None` for something that is not a query we understand.
fn answer(query: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let kind = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let name = labels.join(".");
    let failing = zone.failing.load(Ordering::SeqCst);
    let rdata = if failing {
        Vec::new()
    } else {
        zone.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(name, kind))
            .cloned()
            .unwrap_or_default()
    };
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]);
    // QR, opcode 0, AA, RD copied, RA; rcode 2 (SERVFAIL) when failing.
    let rd = query[2] & 0x01;
    reply.push(0x84 | rd);
    reply.push(0x80 | if failing { 2 } else { 0 });
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes());
    reply.extend_from_slice(question);
    for data in rdata {
        reply.extend_from_slice(&[0xC0, 0x0C]);
        reply.extend_from_slice(&kind.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes());
        // TTL 1 s: discovery must refresh on its own schedule anyway.
        reply.extend_from_slice(&1u32.to_be_bytes());
        reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
        reply.extend_from_slice(&data);
    }
    Some(reply)
}
