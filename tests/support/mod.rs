//! Shared end-to-end test support: programmable upstreams, misbehaving raw upstreams and clients.
//! Every server binds 127.0.0.1:0 and is ready when its `start` returns; nothing here sleeps to
//! wait for readiness.
#![allow(dead_code, unused_imports)]

pub mod body;
pub mod client;
pub mod dns;
pub mod raw_upstream;
pub mod recording;
pub mod redis;
pub mod tls;
pub mod upstream;

pub use body::{
    BodySender, TestBody, channel_body, empty, full, pattern_body, pattern_byte, pattern_mismatch,
};
pub use client::{
    Collected, RawConn, RawResponse, TestClient, TlsConn, collect, get, h2_client, http1_client,
    raw_request, send, tls_handshake, upload_reading_concurrently, ws_connect,
};
pub use dns::DnsServer;
pub use raw_upstream::{RawConnection, RawUpstream};
pub use redis::RedisServer;
pub use upstream::{Fault, RecordedRequest, Upstream};
pub mod gateway;
pub mod idp;
pub use gateway::TestGateway;
