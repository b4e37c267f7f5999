//! A tiny HTTP/1.1 client over a unix socket, enough to ask podman's REST API one question: `GET`, with
//! `Host: d` and `Connection: close`; the answer's status line, headers and body framed by `Content-Length`,
//! `Transfer-Encoding: chunked` or the end of the connection. Bounded: the connect, every read and every write
//! time out after [`TIMEOUT`], the whole exchange after [`DEADLINE`], and an answer larger than [`MAX_RESPONSE`]
//! is refused. The parsing ([`Reader`]) is pure and fed the bytes as they come.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, setsockopt, socket, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// Each connect, read and write.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);
/// The whole request and answer.
pub(super) const DEADLINE: Duration = Duration::from_secs(3);
/// The largest answer read (headers and body as they come over the socket).
pub(super) const MAX_RESPONSE: usize = 16 << 20;
/// The status line and headers.
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP/1.1 answer: {what}"))
}

/// `GET target` from the server on unix socket `socket`.
pub(super) fn get(socket: &Path, target: &str) -> io::Result<Response> {
    let start = Instant::now();
    let mut stream = connect_bounded(socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: d\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut reader = Reader::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if start.elapsed() > DEADLINE {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no whole answer within {DEADLINE:?}")));
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        raw.extend_from_slice(buf.get(..n).unwrap_or_default());
        if raw.len() > MAX_RESPONSE {
            return Err(invalid(&format!("larger than {MAX_RESPONSE} bytes")));
        }
        if let Some(response) = reader.feed(&raw, n == 0)? {
            return Ok(response);
        }
    }
}

/// A unix stream connected with a send timeout in force, so that even a listener whose backlog is full
/// cannot hold the connect longer than [`TIMEOUT`] (std's `UnixStream::connect` would wait for good).
fn connect_bounded(path: &Path) -> io::Result<UnixStream> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let timeout = TimeVal::milliseconds(i64::try_from(TIMEOUT.as_millis()).unwrap_or(1000));
    setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// The whole answer in `raw`, as if the server had closed the connection after it.
#[cfg(test)]
pub(super) fn parse(raw: &[u8]) -> io::Result<Response> {
    Reader::default().feed(raw, true)?.ok_or_else(|| invalid("incomplete"))
}

/// An answer parsed as its bytes come: [`Reader::feed`] is given everything received so far each time.
#[derive(Debug, Default)]
pub(super) struct Reader {
    head: Option<Head>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    /// Where the body starts in the raw bytes.
    body_start: usize,
    framing: Framing,
}

#[derive(Debug)]
enum Framing {
    /// 1xx (past 100-continue), 204, 304: no body.
    Empty,
    Length(usize),
    Chunked(Chunked),
    /// Neither: the body ends with the connection.
    UntilClose,
}

impl Reader {
    /// `Some` once `raw` holds a whole answer; `eof`: the server closed the connection after `raw`.
    pub(super) fn feed(&mut self, raw: &[u8], eof: bool) -> io::Result<Option<Response>> {
        if self.head.is_none() {
            self.head = parse_head(raw)?;
        }
        let Some(head) = self.head.as_mut() else {
            return if eof { Err(invalid("the connection closed inside the headers")) } else { Ok(None) };
        };
        let body = raw.get(head.body_start..).unwrap_or_default();
        let status = head.status;
        let done = |body: Vec<u8>| Ok(Some(Response { status, body }));
        match &mut head.framing {
            Framing::Empty => done(Vec::new()),
            Framing::Length(n) => match body.get(..*n) {
                Some(b) => done(b.to_vec()),
                None if eof => Err(invalid("the connection closed before Content-Length bytes")),
                None => Ok(None),
            },
            Framing::Chunked(chunked) => match chunked.feed(body)? {
                true => done(std::mem::take(&mut chunked.body)),
                false if eof => Err(invalid("the connection closed inside a chunked body")),
                false => Ok(None),
            },
            Framing::UntilClose => {
                if eof {
                    done(body.to_vec())
                } else {
                    Ok(None)
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status line and headers of the final answer (interim 1xx answers are skipped), once all are in.
fn parse_head(raw: &[u8]) -> io::Result<Option<Head>> {
    let mut start = 0;
    loop {
        let rest = raw.get(start..).unwrap_or_default();
        let Some(end) = find(rest, b"\r\n\r\n") else {
            return if rest.len() > MAX_HEAD { Err(invalid("headers too long")) } else { Ok(None) };
        };
        if end > MAX_HEAD {
            return Err(invalid("headers too long"));
        }
        let text =
            std::str::from_utf8(rest.get(..end).unwrap_or_default()).map_err(|_| invalid("headers not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let status = parse_status_line(lines.next().unwrap_or(""))?;
        let body_start = start + end + 4;
        if (100..200).contains(&status) && status != 101 {
            start = body_start;
            continue;
        }
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| invalid("a header without a colon"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = value.parse::<usize>().map_err(|_| invalid("Content-Length is not a number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(invalid("two different Content-Length headers"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        let framing = if status == 204 || status == 304 || status < 200 {
            Framing::Empty
        } else if chunked {
            // Transfer-Encoding wins over a Content-Length beside it (RFC 9112 6.3).
            Framing::Chunked(Chunked::default())
        } else if let Some(n) = length {
            if n > MAX_RESPONSE {
                return Err(invalid("Content-Length too large"));
            }
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok(Some(Head { status, body_start, framing }));
    }
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("no HTTP/1.x status line"));
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 {
        return Err(invalid("the status is not three digits"));
    }
    code.parse::<u16>().map_err(|_| invalid("the status is not three digits"))
}

/// A chunked body decoded as it comes; `pos` is how much of the raw body whole chunks have used.
#[derive(Debug, Default)]
struct Chunked {
    pos: usize,
    body: Vec<u8>,
}

impl Chunked {
    /// `raw` is the body received so far (from its first byte). True once the last chunk and the trailers are in.
    fn feed(&mut self, raw: &[u8]) -> io::Result<bool> {
        loop {
            let rest = raw.get(self.pos..).unwrap_or_default();
            let Some(line_end) = find(rest, b"\r\n") else {
                return if rest.len() > 1024 { Err(invalid("a chunk size line too long")) } else { Ok(false) };
            };
            let line = std::str::from_utf8(rest.get(..line_end).unwrap_or_default())
                .map_err(|_| invalid("a chunk size line not UTF-8"))?;
            // `size[;extension...]`
            let hex = line.split(';').next().unwrap_or("").trim();
            if hex.is_empty() || hex.len() > 8 {
                return Err(invalid("a chunk size that is not 1 to 8 hex digits"));
            }
            let size = usize::from_str_radix(hex, 16).map_err(|_| invalid("a chunk size that is not hex"))?;
            let data_start = line_end + 2;
            if size == 0 {
                // Trailers (ignored) up to an empty line.
                let after = rest.get(data_start..).unwrap_or_default();
                return Ok(after.starts_with(b"\r\n") || find(after, b"\r\n\r\n").is_some());
            }
            if self.body.len() + size > MAX_RESPONSE {
                return Err(invalid("a chunked body too large"));
            }
            let data_end = data_start + size;
            let Some(after) = rest.get(data_end..data_end + 2) else { return Ok(false) };
            if after != b"\r\n" {
                return Err(invalid("a chunk not followed by CRLF"));
            }
            self.body.extend_from_slice(rest.get(data_start..data_end).unwrap_or_default());
            self.pos += data_end + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n[1,2,3]";
        assert_eq!(parse(raw).unwrap(), Response { status: 200, body: b"[1,2,3]".to_vec() });
        // Extra bytes after the body are not part of it; too few are an error at the end of the connection.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]garbage";
        assert_eq!(parse(raw).unwrap().body, b"[]");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n[]").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n[]").is_err());
    }

    #[test]
    fn chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[{\"a\r\n5;ext=1\r\n\":1}]\r\n0\r\n\r\n";
        assert_eq!(parse(raw).unwrap().body, b"[{\"a\":1}]");
        // Upper-case hex, trailers, and Transfer-Encoding over a Content-Length beside it.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(parse(raw).unwrap().body, b"0123456789");
        // Broken framing.
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n",
        ] {
            assert!(parse(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn fed_byte_by_byte_the_answer_is_whole_only_at_its_end() {
        let raw: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                           3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut reader = Reader::default();
        for n in 0..raw.len() {
            assert_eq!(reader.feed(&raw[..n], false).unwrap(), None, "complete after {n} bytes");
        }
        assert_eq!(reader.feed(raw, false).unwrap(), Some(Response { status: 200, body: b"abcde".to_vec() }));

        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let mut reader = Reader::default();
        for n in 0..raw.len() {
            assert_eq!(reader.feed(&raw[..n], false).unwrap(), None);
        }
        assert_eq!(reader.feed(raw, false).unwrap().unwrap().body, b"abc");
    }

    #[test]
    fn statuses_and_bodies_without_framing() {
        let raw = b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nno such thing";
        assert_eq!(parse(raw).unwrap(), Response { status: 404, body: b"no such thing".to_vec() });
        let mut reader = Reader::default();
        assert_eq!(reader.feed(raw, false).unwrap(), None, "without a length the body ends with the connection");
        assert_eq!(parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(), Response { status: 204, body: vec![] });
        for raw in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
            b"",
        ] {
            assert!(parse(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    proptest::proptest! {
        /// Whatever a socket sends, in whatever pieces: an answer, "more", or an error; never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            head in proptest::sample::select(vec![
                &b""[..],
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ]),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            cut in 0usize..600,
        ) {
            let raw: Vec<u8> = head.iter().copied().chain(tail).collect();
            let mut reader = Reader::default();
            let cut = cut.min(raw.len());
            if let Ok(None) = reader.feed(&raw[..cut], false) {
                let _ = reader.feed(&raw, true);
            }
            let _ = parse(&raw);
        }
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
