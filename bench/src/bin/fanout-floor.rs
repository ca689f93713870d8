//! The floor for `bench/fanout.sh`: the least work any server could do for its SSE fan-out
//! traffic, so that the report shows which targets are below what the machine allows.
//! Not a product: nothing is durable, there is no HTTP framework, no auth, no history.
//!
//! It speaks what the load generator (`fanout --server floor`) speaks to nginx + nchan, on
//! one thread (a current-thread tokio runtime):
//! - `GET /sub/<channel>`: a `200` head (`text/event-stream`, no length, no chunking: the
//!   body runs until the connection closes), then the socket joins the channel's list.
//!   Nothing more is read from it.
//! - `POST /pub?id=<channel>` with a `Content-Length` body: the body becomes one frame
//!   `data: <body>\n\n`, written to every subscriber of the channel with one non-blocking
//!   send each, in one loop (no task wakes per subscriber); then `201 Created`, empty.
//!   The publisher's connection is kept alive for its next request.
//! - Anything else: `404`, empty.
//!
//! A short or would-block send keeps the rest in that subscriber's backlog, which a task
//! started for it writes out when the socket is writable (later frames queue behind it, so
//! nothing is lost or reordered; the backlog is not bounded). A send error drops the
//! subscriber.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8090.
    #[arg(long)]
    addr: SocketAddr,
}

/// Connections waiting to be accepted (the load generator opens hundreds at once).
const LISTEN_BACKLOG: u32 = 8192;
/// The longest request head read; longer ones get `431` and the connection is closed.
const MAX_HEAD: usize = 16 * 1024;

const SUBSCRIBED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\nconnection: close\r\n\r\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const HEAD_TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const LENGTH_REQUIRED: &[u8] =
    b"HTTP/1.1 411 Length Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// One subscription's socket and what it still owes the subscriber.
struct Subscriber {
    stream: TcpStream,
    /// Bytes a short send left behind, in order; not empty while its flush task runs.
    backlog: RefCell<Vec<u8>>,
    /// A send failed: the channel forgets it at its next publish.
    dead: Cell<bool>,
}

impl Subscriber {
    /// Sends `bytes` with one non-blocking send, or queues them behind a backlog; false
    /// once the subscriber is gone.
    fn send(self: &Rc<Self>, bytes: &[u8]) -> bool {
        if self.dead.get() {
            return false;
        }
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            backlog.extend_from_slice(bytes);
            return true;
        }
        let sent = match self.stream.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                self.dead.set(true);
                return false;
            }
        };
        if sent < bytes.len() {
            backlog.extend_from_slice(&bytes[sent..]);
            tokio::task::spawn_local(flush_backlog(self.clone()));
        }
        true
    }
}

/// Writes a subscriber's backlog out as its socket becomes writable (the rare path).
async fn flush_backlog(sub: Rc<Subscriber>) {
    loop {
        if sub.stream.writable().await.is_err() {
            break;
        }
        let mut backlog = sub.backlog.borrow_mut();
        match sub.stream.try_write(&backlog) {
            Ok(n) => {
                backlog.drain(..n);
                if backlog.is_empty() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    sub.dead.set(true);
    sub.backlog.borrow_mut().clear();
}

/// Each channel's subscribers.
type Channels = Rc<RefCell<HashMap<String, Vec<Rc<Subscriber>>>>>;

/// Sends `frame` to every subscriber of `channel`, forgetting those that are gone.
fn fan_out(channels: &Channels, channel: &str, frame: &[u8]) {
    if let Some(subs) = channels.borrow_mut().get_mut(channel) {
        subs.retain(|sub| sub.send(frame));
    }
}

/// The SSE frame carrying `body`: a `data:` line per line of it, then a blank line.
fn sse_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 8);
    for line in body.split(|&b| b == b'\n') {
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        frame.push(b'\n');
    }
    frame.push(b'\n');
    frame
}

/// The value of query parameter `name` in `path` (not percent-decoded).
fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// What a request asks for.
enum Route {
    Subscribe(String),
    Publish(String),
    NotFound,
}

/// A parsed request head.
struct Head {
    route: Route,
    /// Bytes of the head, up to and including its blank line.
    len: usize,
    body_len: usize,
    /// `Connection: close`, or HTTP/1.0.
    close: bool,
}

/// Parses the request head at the start of `buf`: Ok(None) while it is incomplete, Err
/// with the response to close with when it cannot be served.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static [u8]> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HEAD_TOO_LARGE)
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| BAD_REQUEST)?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path), Some(version), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(BAD_REQUEST);
    };
    let mut body_len = 0;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(BAD_REQUEST)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().map_err(|_| BAD_REQUEST)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(LENGTH_REQUIRED);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let route = match method {
        "GET" => match path.strip_prefix("/sub/") {
            Some(channel) if !channel.is_empty() && !channel.contains(['/', '?']) => {
                Route::Subscribe(channel.to_owned())
            }
            _ => Route::NotFound,
        },
        "POST" if path.split('?').next() == Some("/pub") => match query_param(path, "id") {
            Some(channel) if !channel.is_empty() => Route::Publish(channel.to_owned()),
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    };
    Ok(Some(Head {
        route,
        len: end + 4,
        body_len,
        close,
    }))
}

/// Serves one connection's requests until it closes or becomes a subscription.
async fn serve(mut stream: TcpStream, channels: Channels) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(response) => return stream.write_all(response).await,
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let request_len = head.len + head.body_len;
        while buf.len() < request_len {
            buf.reserve(request_len - buf.len());
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        match head.route {
            Route::Subscribe(channel) => {
                let sub = Rc::new(Subscriber {
                    stream,
                    backlog: RefCell::new(Vec::new()),
                    dead: Cell::new(false),
                });
                // The head goes the way the frames go, so it stays first whatever happens.
                if sub.send(SUBSCRIBED) {
                    channels.borrow_mut().entry(channel).or_default().push(sub);
                }
                return Ok(());
            }
            Route::Publish(channel) => {
                fan_out(&channels, &channel, &sse_frame(&buf[head.len..request_len]));
                stream.write_all(PUBLISHED).await?;
            }
            Route::NotFound => stream.write_all(NOT_FOUND).await?,
        }
        if head.close {
            return Ok(());
        }
        buf.drain(..request_len);
    }
}

async fn accept_loop(addr: SocketAddr) -> io::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    eprintln!("fanout-floor listening on {}", listener.local_addr()?);
    let channels: Channels = Rc::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // One send per event: Nagle must not hold one back for an ACK.
                stream.set_nodelay(true).ok();
                tokio::task::spawn_local(serve(stream, channels.clone()));
            }
            // Out of file descriptors, most likely: wait for some to close.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    if let Err(e) = local.block_on(&runtime, accept_loop(args.addr)) {
        eprintln!("fanout-floor: {e}");
        std::process::exit(1);
    }
}
