//! `GET` from an HTTP/1.1 server on a unix socket (podman's REST API), with hyper's client connection
//! (`client::conn::http1`) on the runtimes' API thread (`api_thread`); and [`get_stream`], for an answer that
//! does not end (podman's events), on the daemon's own tokio runtime. Bounded as a blocking client would
//! be: the connect, the request and the answer's head, and every piece of its body each within [`TIMEOUT`];
//! the whole exchange within [`DEADLINE`]; the head within [`MAX_HEAD`] and the body within
//! [`MAX_RESPONSE`] (`http_body_util::Limited`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, HOST};
use hyper_util::rt::TokioIo;

use super::api_thread;

/// The connect, the request until the answer's head, and each piece of the body.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);
/// The whole request and answer.
pub(super) const DEADLINE: Duration = Duration::from_secs(3);
/// The largest body read.
pub(super) const MAX_RESPONSE: usize = 16 << 20;
/// The status line and headers (hyper's read buffer).
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: no answer within {TIMEOUT:?}"))
}

/// `GET target` from the server on unix socket `socket`.
pub(super) fn get(socket: &Path, target: &str) -> io::Result<Response> {
    let (socket, target) = (socket.to_path_buf(), target.to_owned());
    api_thread::ask(DEADLINE, move || async move { exchange(&socket, &target).await })
        .unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, format!("no whole answer within {DEADLINE:?}"))))
}

async fn exchange(socket: &PathBuf, target: &str) -> io::Result<Response> {
    let stream = tokio::time::timeout(TIMEOUT, tokio::net::UnixStream::connect(socket))
        .await
        .map_err(|_| timed_out("connect"))??;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(target)
        .header(HOST, "d")
        .header(ACCEPT, "application/json")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let answer = read_answer(&mut sender, request).await;
    connection.abort();
    answer
}

async fn read_answer(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    request: hyper::Request<Empty<Bytes>>,
) -> io::Result<Response> {
    let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| timed_out("request"))?
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let status = response.status().as_u16();
    let mut body = Limited::new(response.into_body(), MAX_RESPONSE);
    let mut out = Vec::new();
    while let Some(frame) = tokio::time::timeout(TIMEOUT, body.frame()).await.map_err(|_| timed_out("body"))? {
        let frame = frame.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(Response { status, body: out })
}

/// `GET target` from the server on unix socket `socket`, for an answer that streams for as long as the
/// server lives (podman's events): `on_piece` is called with each piece of the body as it arrives, with no
/// bound on the time between pieces, each piece within [`MAX_RESPONSE`]. Returns when the server ends the
/// body (`Ok`) or the connection fails; `on_open` once the server has answered with success. Run on a tokio
/// runtime of the caller's (the daemon's).
pub(super) async fn get_stream(
    socket: &Path,
    target: &str,
    on_open: impl FnOnce(),
    mut on_piece: impl FnMut(&[u8]),
) -> io::Result<()> {
    let stream = tokio::time::timeout(TIMEOUT, tokio::net::UnixStream::connect(socket))
        .await
        .map_err(|_| timed_out("connect"))??;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(target)
        .header(HOST, "d")
        .header(ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let answer = async {
        let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| timed_out("request"))?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !response.status().is_success() {
            return Err(io::Error::other(format!("answered {}", response.status())));
        }
        on_open();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Ok(data) = frame.into_data() {
                if data.len() > MAX_RESPONSE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a piece of the stream is too large"));
                }
                on_piece(&data);
            }
        }
        Ok(())
    }
    .await;
    connection.abort();
    answer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::{Read, Write};
    use std::time::Instant;

    use super::*;

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Serves one answer per connection: reads a request's head, writes `raw`, closes.
    fn serve(path: &Path, answers: Vec<Vec<u8>>) -> std::thread::JoinHandle<Vec<String>> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut requests = Vec::new();
            for raw in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while find(&req, b"\r\n\r\n").is_none() {
                    let n = s.read(&mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                requests.push(String::from_utf8(req).unwrap());
                let _ = s.write_all(&raw);
            }
            requests
        })
    }

    #[test]
    fn bodies_framed_every_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let server = serve(
            &path,
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]".to_vec(),
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n".to_vec(),
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"message\":\"no\"}".to_vec(),
                b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            ],
        );
        assert_eq!(get(&path, "/a").unwrap(), Response { status: 200, body: b"[]".to_vec() });
        assert_eq!(get(&path, "/b").unwrap(), Response { status: 200, body: b"[1,2]".to_vec() });
        assert_eq!(get(&path, "/c").unwrap(), Response { status: 404, body: br#"{"message":"no"}"#.to_vec() });
        assert_eq!(get(&path, "/d").unwrap(), Response { status: 204, body: Vec::new() });
        let requests = server.join().unwrap();
        assert!(requests[0].starts_with("GET /a HTTP/1.1\r\n"), "{}", requests[0]);
        assert!(
            requests[0].contains("\r\nHost: d\r\n") && requests[0].contains("\r\nConnection: close\r\n"),
            "{}",
            requests[0]
        );
    }

    #[test]
    fn a_streamed_answer_is_handed_over_piece_by_piece_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let server = serve(
            &path,
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n3\r\n{}\n\r\n0\r\n\r\n".to_vec(),
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            ],
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (mut opened, mut pieces) = (false, Vec::new());
        runtime
            .block_on(get_stream(&path, "/events?stream=true", || opened = true, |p| pieces.extend_from_slice(p)))
            .unwrap();
        assert!(opened);
        assert_eq!(pieces, b"{}\n{}\n");
        let mut opened = false;
        assert!(runtime.block_on(get_stream(&path, "/events", || opened = true, |_| {})).is_err());
        assert!(!opened, "a 404 is no stream");
        let requests = server.join().unwrap();
        assert!(requests[0].starts_with("GET /events?stream=true HTTP/1.1\r\n"), "{}", requests[0]);
    }

    #[test]
    fn garbage_oversized_heads_and_bodies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let mut big_head = b"HTTP/1.1 200 OK\r\n".to_vec();
        big_head.extend(std::iter::repeat_n(b"X-A: b\r\n".iter().copied(), MAX_HEAD / 8 + 1).flatten());
        big_head.extend_from_slice(b"\r\n");
        let big_body = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_RESPONSE + 1).into_bytes();
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n", MAX_RESPONSE + 1).as_bytes());
        chunked.extend(std::iter::repeat_n(b'a', MAX_RESPONSE + 1));
        let server = serve(&path, vec![b"garbage\r\n\r\n".to_vec(), big_head, big_body, chunked]);
        for target in ["/garbage", "/head", "/declared", "/chunked"] {
            assert!(get(&path, target).is_err(), "{target}");
        }
        server.join().unwrap();
    }

    #[test]
    fn get_over_a_unix_socket_and_its_bounds() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // 1: a chunked answer, checking the request line and headers.
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&req, b"\r\n\r\n").is_none() {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(req.starts_with("GET /v4.0.0/libpod/containers/json HTTP/1.1\r\n"), "{req}");
            assert!(req.contains("\r\nHost: d\r\n") && req.contains("\r\nConnection: close\r\n"), "{req}");
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n").unwrap();
            drop(s);
            // 2: a server that never answers: the read times out.
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(TIMEOUT + Duration::from_millis(500));
            drop(s);
        });
        assert_eq!(
            get(&path, "/v4.0.0/libpod/containers/json").unwrap(),
            Response { status: 200, body: b"[]".to_vec() }
        );
        let t = Instant::now();
        assert!(get(&path, "/x").is_err());
        assert!(t.elapsed() < DEADLINE, "bounded by the read timeout: {:?}", t.elapsed());
        server.join().unwrap();
        assert!(get(&dir.path().join("none.sock"), "/x").is_err());
    }
}
