//! A one-shot HTTP/1.1 `GET` for the engine's `/stats` (JSON), before and after a run.
//! `Connection: close`, the whole answer read to its end; `Content-Length` and chunked
//! bodies are both understood. Bounded by the caller's timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::Endpoint;

/// `GET` `endpoint` and parse the body as JSON; the error says what went wrong.
pub async fn get_json(endpoint: &Endpoint, timeout: Duration) -> Result<serde_json::Value, String> {
    let fetch = async {
        let mut s = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("connect {}: {e}", endpoint.authority()))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            endpoint.path,
            endpoint.authority()
        );
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer from {endpoint} within {timeout:?}"))??;
    let body = body_of(&raw)?;
    serde_json::from_slice(&body).map_err(|e| format!("{endpoint}: not JSON: {e}"))
}

/// The body of a complete HTTP/1.1 response with status 200.
pub(crate) fn body_of(raw: &[u8]) -> Result<Vec<u8>, String> {
    let at = memchr::memmem::find(raw, b"\r\n\r\n").ok_or("no HTTP response head")?;
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    let body = &raw[at + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(body_of(plain).unwrap(), b"{\"a\":1}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).unwrap(), b"{\"a\":1}");
        assert!(body_of(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
