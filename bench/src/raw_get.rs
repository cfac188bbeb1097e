//! A minimal HTTP/1.1 keep-alive GET loop for the static endpoints (discovery, JWKS).
//!
//! A general client (reqwest/hyper) spends more CPU per request than the broker needs to
//! answer these, so the load generator's core ran out first and only a lower bound was
//! measured. This loop writes one fixed request and reads one `Content-Length` response
//! per turn: enough for a server we know answers that way, and a fraction of the cost.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Stats;

/// A request without an answer this long is an error (as with the other scenarios' client).
const TIMEOUT: Duration = Duration::from_secs(10);

/// One response: its status, and how many bytes of `buf` it used.
fn parse(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no status line")?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or("response without Content-Length")?;
    let total = head_end + 4 + length;
    Ok((buf.len() >= total).then_some((status, total)))
}

/// GETs `path` from `addr` on one keep-alive connection until `deadline`.
pub async fn get_loop(addr: &str, path: &str, deadline: Instant) -> Stats {
    let mut stats = Stats::default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    let mut stream = None;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let t = Instant::now();
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(e) => {
                    stats.err(format!("connect {addr}: {e}"));
                    // Not a busy loop of failures while the broker is away.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let answer = tokio::time::timeout(TIMEOUT, exchange(s, request.as_bytes(), &mut buf))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")));
        match answer {
            Ok(200) => stats.ok(t),
            Ok(status) => stats.err(format!("GET {path}: HTTP {status}")),
            Err(e) => {
                stats.err(format!("GET {path}: {e}"));
                stream = None;
                buf.clear();
            }
        }
    }
    stats
}

async fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<u16, String> {
    s.write_all(request).await.map_err(|e| e.to_string())?;
    loop {
        if let Some((status, used)) = parse(buf)? {
            buf.drain(..used);
            return Ok(status);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let one = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: x\r\n\r\nhello";
        assert_eq!(parse(one), Ok(Some((200, one.len()))));
        assert_eq!(parse(&one[..one.len() - 1]), Ok(None), "body not complete");
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), Ok(None), "head not complete");
        let mut two = one.to_vec();
        two.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse(&two), Ok(Some((200, one.len()))));
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no length");
    }
}
