//! A minimal SOCKS5 client (no authentication, domain-name CONNECT), enough to reach an
//! onion service through a C tor client's SOCKS port.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Open a stream to `host:port` through the SOCKS5 proxy at `socks`.
pub async fn connect(socks: SocketAddr, host: &str, port: u16) -> std::io::Result<TcpStream> {
    let err = |m: String| std::io::Error::other(m);
    let mut s = TcpStream::connect(socks).await?;
    s.set_nodelay(true)?;
    s.write_all(&[5, 1, 0]).await?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await?;
    if reply != [5, 0] {
        return Err(err(format!("socks: method refused {reply:?}")));
    }
    let name_len = u8::try_from(host.len()).map_err(|_| err("socks: host name too long".into()))?;
    let mut req = vec![5, 1, 0, 3, name_len];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(err(format!(
            "socks: connect failed, reply {:#04x}",
            head[1]
        )));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        t => return Err(err(format!("socks: bad address type {t}"))),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await?;
    Ok(s)
}
