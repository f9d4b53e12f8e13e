//! A recording proxy in front of a test server: every byte a client sends is kept, per
//! connection, so that a test can scan exactly what the server received (request heads
//! and bodies, and WebSocket frames, unmasked).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Log = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// The proxy; clients connect to `addr`.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    log: Log,
}

impl RecordingProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let conns = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let buf = Arc::new(Mutex::new(Vec::new()));
                conns.lock().push(Arc::clone(&buf));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut chunk = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut chunk).await {
                        if n == 0 || sw.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        buf.lock().extend_from_slice(&chunk[..n]);
                    }
                    let _ = sw.shutdown().await;
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
            }
        });
        Self { addr, log }
    }

    /// What the server received on each connection, WebSocket frames unmasked; and the
    /// number of WebSocket text frames seen.
    pub fn received(&self) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut out = Vec::new();
        let mut frames = Vec::new();
        for c in self.log.lock().iter() {
            let bytes = c.lock().clone();
            // The upgrade request may follow other requests on a kept-alive connection;
            // after its head, the connection carries frames only.
            let lower = bytes.to_ascii_lowercase();
            let head_end = find(&lower, b"upgrade: websocket")
                .and_then(|at| find(&bytes[at..], b"\r\n\r\n").map(|i| at + i + 4));
            match (head_end.is_some(), head_end) {
                (true, Some(end)) => {
                    let mut text = bytes[..end].to_vec();
                    for payload in unmask_frames(&bytes[end..]) {
                        text.extend_from_slice(&payload);
                        frames.push(String::from_utf8_lossy(&payload).into_owned());
                    }
                    out.push(text);
                }
                _ => out.push(bytes),
            }
        }
        (out, frames)
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The payloads of the client-to-server frames in `bytes` (masked, as clients send them).
pub fn unmask_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let masked = bytes[1] & 0x80 != 0;
        let mut len = u64::from(bytes[1] & 0x7f);
        let mut at = 2;
        if len == 126 {
            if bytes.len() < 4 {
                break;
            }
            len = u64::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            at = 4;
        } else if len == 127 {
            if bytes.len() < 10 {
                break;
            }
            len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
            at = 10;
        }
        let mask: [u8; 4] = if masked {
            if bytes.len() < at + 4 {
                break;
            }
            let m = bytes[at..at + 4].try_into().unwrap();
            at += 4;
            m
        } else {
            [0; 4]
        };
        let len = usize::try_from(len).unwrap();
        if bytes.len() < at + len {
            break;
        }
        let payload: Vec<u8> = bytes[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        out.push(payload);
        bytes = &bytes[at + len..];
    }
    out
}
