//! Fan-out load generator: N Server-Sent-Events subscribers on one topic and a sequential
//! publisher in one single-threaded process (pin it to a core of its own with `taskset`).
//!
//! - Subscribers speak HTTP/1.1 over raw TCP: a hand-written `GET`, the response head, then
//!   the body (chunked or not) scanned for SSE `data:` lines. Every connection reads into
//!   one shared buffer, so an idle subscriber costs a socket, a small task and its bitmap.
//! - The publisher sends one event at a time (the next after the previous acknowledgement),
//!   paced to `--rate` per second for `--duration` seconds. Each payload is JSON
//!   `{"t":<unix micros at send>,"n":<publish number>,"p":"xxx…"}` padded to `--payload`
//!   bytes; PiCloud gets it as the event's `data`, nchan (and the floor) as the raw
//!   message body.
//! - Each delivery records receive time minus `t` (publish-send to receive) and sets bit `n`
//!   of its subscriber's bitmap: every subscriber must get every acknowledged publish exactly
//!   once. Lost, duplicated, reordered and unacknowledged-but-delivered messages are counted;
//!   for PiCloud the envelope's `seq` must also go up by one per frame.
//! - Server memory per idle connection: VmRSS of `--server-pid` before the subscribers
//!   connect and after they are all connected and idle, divided by N. Server CPU: utime +
//!   stime of `--server-pid` from the first publish to the last delivery.
//!
//! Prints progress on stderr and one JSON object on stdout.

// `serde_json::json!` nests one macro call per field of the report.
#![recursion_limit = "256"]

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Server {
    /// `GET /v1/apps/{app}/realtime?topic=…`: waits for the `hello` frame; checks `seq`.
    Picloud,
    /// nginx + nchan `nchan_subscriber eventsource`: subscribed once the head arrives.
    Nchan,
    /// bench's fanout-floor: the least work a server could do; same protocol as nchan.
    Floor,
}

impl Server {
    /// Its name in the report.
    fn name(self) -> &'static str {
        match self {
            Server::Picloud => "picloud",
            Server::Nchan => "nchan",
            Server::Floor => "floor",
        }
    }

    /// Whether a subscription is live once the response head arrives (else: at the hello).
    fn subscribed_at_head(self) -> bool {
        self != Server::Picloud
    }
}

#[derive(Parser)]
struct Args {
    /// Which server: decides the publish body and what "subscribed" means.
    #[arg(long, value_enum)]
    server: Server,
    /// Server address for the subscribers, e.g. 127.0.0.1:8080.
    #[arg(long)]
    addr: SocketAddr,
    /// Subscribe path and query, e.g. /v1/apps/bench/realtime?topic=fan or /sub/fan.
    #[arg(long)]
    sub_path: String,
    /// Publish URL, e.g. http://127.0.0.1:8080/v1/apps/bench/topics/fan/events or
    /// http://127.0.0.1:8081/pub?id=fan.
    #[arg(long)]
    pub_url: String,
    /// A publish URL on another topic/channel, hit a few times before measuring.
    #[arg(long)]
    warm_url: Option<String>,
    /// API key for publishing (PiCloud).
    #[arg(long, env = "PICLOUD_KEY", default_value = "")]
    key: String,
    /// Number of subscribers.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Publishes per second asked for.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Bytes of each event's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Server process to measure (the nginx workers for nchan): repeat for several,
    /// whose memory and CPU are added up.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Subscriptions being set up at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Subscribers per loopback source address: the first this many connect from the
    /// kernel's choice, later ones bind 127.0.1.1, 127.0.1.2, … so that ephemeral ports
    /// never run out (binding is slow: the kernel searches its bind table for a free port).
    #[arg(long, default_value_t = 20_000)]
    per_source_ip: usize,
    /// Seconds to wait after the last subscriber connected, before measuring memory.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// After the last publish, stop waiting for deliveries once none arrived for this
    /// many seconds (what is missing then counts as lost).
    #[arg(long, default_value_t = 5)]
    drain: u64,
    /// The core the server is pinned to: its busy share over the publish phase is reported
    /// (it includes other programs that ran there).
    #[arg(long)]
    server_core: Option<usize>,
    /// The core this load generator is pinned to (reported the same way).
    #[arg(long)]
    loadgen_core: Option<usize>,
    /// Subscribe as a browser on another origin would: an `Origin` header with this value
    /// and the embedding site's own cookies.
    #[arg(long)]
    origin: Option<String>,
    /// Kernel clock ticks per second (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Latency histogram: 10 µs buckets up to 1 s, then 1 ms buckets up to 10 min.
struct Hist {
    fine: Vec<u32>,
    coarse: Vec<u32>,
    count: u64,
    max_us: u64,
}

impl Hist {
    const FINE_STEP: u64 = 10;
    const FINE_END: u64 = 1_000_000;
    const COARSE_STEP: u64 = 1_000;
    const COARSE_END: u64 = 600_000_000;

    fn new() -> Self {
        Hist {
            fine: vec![0; (Self::FINE_END / Self::FINE_STEP) as usize],
            coarse: vec![0; ((Self::COARSE_END - Self::FINE_END) / Self::COARSE_STEP) as usize + 1],
            count: 0,
            max_us: 0,
        }
    }

    fn record(&mut self, us: u64) {
        self.count += 1;
        self.max_us = self.max_us.max(us);
        if us < Self::FINE_END {
            self.fine[(us / Self::FINE_STEP) as usize] += 1;
        } else {
            let i = ((us.min(Self::COARSE_END) - Self::FINE_END) / Self::COARSE_STEP) as usize;
            self.coarse[i] += 1;
        }
    }

    /// The upper edge of the bucket holding the p-quantile, in ms.
    fn quantile_ms(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = ((self.count as f64 * p).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.fine.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= target {
                let us = ((i as u64 + 1) * Self::FINE_STEP).min(self.max_us);
                return us as f64 / 1000.0;
            }
        }
        for (i, c) in self.coarse.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= target {
                let us = (Self::FINE_END + (i as u64 + 1) * Self::COARSE_STEP).min(self.max_us);
                return us as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

/// What one subscriber saw.
#[derive(Clone, Default)]
struct Sub {
    /// Bit n: publish n arrived.
    bits: Vec<u64>,
    duplicates: u32,
    out_of_order: u32,
    last_n: Option<u64>,
    last_seq: Option<u64>,
    seq_gaps: u32,
    ready: bool,
}

struct Global {
    subs: Vec<Sub>,
    hist: Hist,
    deliveries: u64,
    /// Deliveries that were new for their subscriber.
    unique: u64,
    last_delivery_us: u64,
    ready: usize,
    failed: usize,
    /// Streams that ended after they were set up.
    closed: usize,
    /// `data:` lines that were neither a hello nor a benchmark event.
    other_frames: u64,
    /// Distinct error messages (up to 10) and how often each occurred.
    errors: Vec<(String, u64)>,
}

impl Global {
    /// Nothing counted yet.
    fn new() -> Self {
        Global {
            subs: Vec::new(),
            hist: Hist::new(),
            deliveries: 0,
            unique: 0,
            last_delivery_us: 0,
            ready: 0,
            failed: 0,
            closed: 0,
            other_frames: 0,
            errors: Vec::new(),
        }
    }
}

impl Global {
    fn note_error(&mut self, e: String) {
        if let Some(seen) = self.errors.iter_mut().find(|(m, _)| *m == e) {
            seen.1 += 1;
        } else if self.errors.len() < 10 {
            self.errors.push((e, 1));
        }
    }

    fn error_list(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|(m, n)| {
                if *n > 1 {
                    format!("{m} (x{n})")
                } else {
                    m.clone()
                }
            })
            .collect()
    }
}

thread_local! {
    static G: RefCell<Global> = RefCell::new(Global::new());
    /// The one read buffer every connection reads into (one task runs at a time).
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 1 << 16]);
}

/// Reads once from `stream` into the shared buffer and hands the bytes to `f`; None at EOF.
async fn read_with<R>(
    stream: &mut TcpStream,
    mut f: impl FnMut(&[u8]) -> R,
) -> io::Result<Option<R>> {
    std::future::poll_fn(|cx| {
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(None)),
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(f(rb.filled())))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The unsigned integer right after `key` (e.g. `"t":`), if any.
fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(hay, key)? + key.len();
    let digits = hay[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    std::str::from_utf8(&hay[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[derive(Clone, Copy)]
enum Body {
    Plain,
    ChunkSize { size: usize, in_ext: bool },
    ChunkData(usize),
    ChunkEnd,
    Finished,
}

/// One subscriber's stream parser: chunked framing, then SSE lines.
struct Conn {
    id: usize,
    server: Server,
    body: Body,
    /// A line split across reads.
    carry: Vec<u8>,
}

impl Conn {
    /// Feeds body bytes; false once the chunked body has ended.
    fn feed(&mut self, mut input: &[u8], now: u64, g: &mut Global) -> bool {
        while !input.is_empty() {
            match self.body {
                Body::Plain => {
                    self.lines(input, now, g);
                    input = &[];
                }
                Body::ChunkSize { size, in_ext } => {
                    let b = input[0];
                    input = &input[1..];
                    self.body = match b {
                        b'\n' if size == 0 => Body::Finished,
                        b'\n' => Body::ChunkData(size),
                        b'\r' => Body::ChunkSize { size, in_ext },
                        b';' => Body::ChunkSize { size, in_ext: true },
                        _ if in_ext => Body::ChunkSize { size, in_ext },
                        _ => match (b as char).to_digit(16) {
                            Some(d) => Body::ChunkSize {
                                size: size * 16 + d as usize,
                                in_ext,
                            },
                            None => {
                                g.note_error(format!("bad chunk size byte {b:#x}"));
                                Body::Finished
                            }
                        },
                    };
                }
                Body::ChunkData(rem) => {
                    let take = rem.min(input.len());
                    self.lines(&input[..take], now, g);
                    input = &input[take..];
                    self.body = if take == rem {
                        Body::ChunkEnd
                    } else {
                        Body::ChunkData(rem - take)
                    };
                }
                Body::ChunkEnd => {
                    if input[0] == b'\n' {
                        self.body = Body::ChunkSize {
                            size: 0,
                            in_ext: false,
                        };
                    }
                    input = &input[1..];
                }
                Body::Finished => return false,
            }
        }
        !matches!(self.body, Body::Finished)
    }

    fn lines(&mut self, mut data: &[u8], now: u64, g: &mut Global) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            if self.carry.is_empty() {
                self.line(&data[..i], now, g);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&data[..i]);
                self.line(&line, now, g);
                line.clear();
                self.carry = line;
            }
            data = &data[i + 1..];
        }
        self.carry.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8], now: u64, g: &mut Global) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        let (Some(t), Some(n)) = (number_after(data, b"\"t\":"), number_after(data, b"\"n\":"))
        else {
            if self.server == Server::Picloud && find(data, b"\"protocol\":").is_some() {
                let sub = &mut g.subs[self.id];
                if !sub.ready {
                    sub.ready = true;
                    g.ready += 1;
                }
            } else {
                g.other_frames += 1;
            }
            return;
        };
        g.deliveries += 1;
        g.hist.record(now.saturating_sub(t));
        g.last_delivery_us = g.last_delivery_us.max(now);
        let sub = &mut g.subs[self.id];
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if sub.bits.len() <= word {
            sub.bits.resize(word + 1, 0);
        }
        if sub.bits[word] & bit != 0 {
            sub.duplicates += 1;
        } else {
            sub.bits[word] |= bit;
            g.unique += 1;
            if sub.last_n.is_some_and(|last| n < last) {
                sub.out_of_order += 1;
            }
        }
        sub.last_n = Some(sub.last_n.map_or(n, |last| last.max(n)));
        if self.server == Server::Picloud {
            if let Some(seq) = number_after(data, b"\"seq\":") {
                if sub.last_seq.is_some_and(|last| seq != last + 1) {
                    sub.seq_gaps += 1;
                }
                sub.last_seq = Some(seq);
            }
        }
    }
}

async fn connect(args: &Args, id: usize) -> io::Result<TcpStream> {
    let k = id / args.per_source_ip.max(1);
    let source = (k > 0 && args.addr.ip().is_loopback())
        .then(|| Ipv4Addr::new(127, 0, 1 + ((k - 1) / 250) as u8, 1 + ((k - 1) % 250) as u8));
    let mut attempt = 0u64;
    loop {
        let socket = TcpSocket::new_v4()?;
        if let Some(source) = source {
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        }
        match socket.connect(args.addr).await {
            Ok(stream) => return Ok(stream),
            // A full accept queue or a momentary port shortage: back off and retry.
            Err(_) if attempt < 9 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sets one subscription up (holding a permit), then reads it until it ends.
async fn subscriber(args: Rc<Args>, id: usize, permits: Rc<tokio::sync::Semaphore>) {
    let permit = permits.acquire().await.unwrap();
    let (mut stream, mut conn) = match open(&args, id).await {
        Ok(v) => v,
        Err(e) => {
            G.with(|g| {
                let mut g = g.borrow_mut();
                g.failed += 1;
                g.note_error(format!("subscribe: {e}"));
            });
            return;
        }
    };
    // PiCloud: the hello frame marks the subscription live; wait for it under the permit.
    while !G.with(|g| g.borrow().subs[id].ready) {
        if !pump(&mut stream, &mut conn).await {
            G.with(|g| {
                let mut g = g.borrow_mut();
                g.failed += 1;
                g.note_error("stream ended before hello".into());
            });
            return;
        }
    }
    drop(permit);
    while pump(&mut stream, &mut conn).await {}
    G.with(|g| {
        let mut g = g.borrow_mut();
        g.closed += 1;
        g.note_error("stream ended during the run".into());
    });
}

/// One read; false when the stream ended.
async fn pump(stream: &mut TcpStream, conn: &mut Conn) -> bool {
    match read_with(stream, |bytes| {
        let now = now_us();
        G.with(|g| conn.feed(bytes, now, &mut g.borrow_mut()))
    })
    .await
    {
        Ok(Some(more)) => more,
        Ok(None) => false,
        Err(e) => {
            G.with(|g| g.borrow_mut().note_error(format!("read: {e}")));
            false
        }
    }
}

/// Connects, sends the GET, reads the response head; returns the stream and its parser
/// fed with whatever body bytes came with the head.
async fn open(args: &Args, id: usize) -> Result<(TcpStream, Conn), String> {
    let mut stream = connect(args, id)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let browser = args
        .origin
        .as_ref()
        .map(|origin| format!("Origin: {origin}\r\nCookie: theme=dark; cart=3\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{browser}\r\n",
        args.sub_path, args.addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    let end = loop {
        let got = read_with(&mut stream, |bytes| head.extend_from_slice(bytes))
            .await
            .map_err(|e| format!("read head: {e}"))?;
        if got.is_none() {
            return Err(format!(
                "connection closed in the head: {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        if let Some(i) = find(&head, b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Err("response head too long".into());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let status = text.lines().next().unwrap_or("").to_owned();
    if !status.starts_with("http/1.1 200") && !status.starts_with("http/1.0 200") {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&head[end..head.len().min(end + 300)])
        ));
    }
    let chunked = text
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let mut conn = Conn {
        id,
        server: args.server,
        body: if chunked {
            Body::ChunkSize {
                size: 0,
                in_ext: false,
            }
        } else {
            Body::Plain
        },
        carry: Vec::new(),
    };
    let now = now_us();
    G.with(|g| {
        let mut g = g.borrow_mut();
        if args.server.subscribed_at_head() {
            g.subs[id].ready = true;
            g.ready += 1;
        }
        conn.feed(&head[end..], now, &mut g);
    });
    Ok((stream, conn))
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// (busy, total) jiffies of one core from /proc/stat.
fn core_jiffies(core: Option<usize>) -> (u64, u64) {
    let Some(core) = core else { return (0, 0) };
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let label = format!("cpu{core}");
    let Some(line) = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&label))
    else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + get(3) + get(4))
}

fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    round(
        after.0.saturating_sub(before.0) as f64 * 100.0 / total as f64,
        1,
    )
}

/// Resident memory of `pids`, added up.
fn proc_rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// CPU ticks (user + system) of `pids`, added up.
fn server_cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|p| proc_cpu_ticks(&format!("/proc/{p}/stat")))
        .sum()
}

fn payload(n: u64, size: usize) -> String {
    let head = format!("{{\"t\":{},\"n\":{n},\"p\":\"", now_us());
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

async fn publish(client: &reqwest::Client, args: &Args, url: &str, n: u64) -> Result<(), String> {
    let data = payload(n, args.payload);
    let request = match args.server {
        Server::Picloud => client
            .post(url)
            .bearer_auth(&args.key)
            .header("content-type", "application/json")
            .body(format!("{{\"type\":\"bench\",\"data\":{data}}}")),
        Server::Nchan | Server::Floor => client
            .post(url)
            .header("content-type", "application/json")
            .body(data),
    };
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

fn quantile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

async fn run(args: Args) {
    let args = Rc::new(args);
    let n_subs = args.subscribers;
    G.with(|g| g.borrow_mut().subs = vec![Sub::default(); n_subs]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    if let Some(url) = &args.warm_url {
        for n in 0..5 {
            if let Err(e) = publish(&client, &args, url, n).await {
                eprintln!("warm-up publish failed: {e}");
                std::process::exit(1);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = proc_rss_kb(&args.server_pid);

    eprintln!(
        "opening {n_subs} subscriptions to {}{}",
        args.addr, args.sub_path
    );
    let connect_start = Instant::now();
    let permits = Rc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    for id in 0..n_subs {
        tokio::task::spawn_local(subscriber(args.clone(), id, permits.clone()));
    }
    let mut last_report = Instant::now();
    loop {
        let (ready, failed) = G.with(|g| {
            let g = g.borrow();
            (g.ready, g.failed)
        });
        if ready + failed >= n_subs {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {ready} subscribed, {failed} failed");
            last_report = Instant::now();
        }
        if connect_start.elapsed() > Duration::from_secs(300) {
            eprintln!("gave up waiting for subscriptions: {ready} subscribed, {failed} failed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    let (ready, failed) = G.with(|g| {
        let g = g.borrow();
        (g.ready, g.failed)
    });
    eprintln!(
        "{ready} subscribed ({failed} failed) in {connect_s:.1} s; settling {} s",
        args.settle
    );
    if ready == 0 {
        let errors = G.with(|g| g.borrow().error_list());
        println!(
            "{}",
            serde_json::json!({"server": args.server.name(), "subscribers": n_subs, "failed": true, "errors": errors})
        );
        std::process::exit(1);
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = proc_rss_kb(&args.server_pid);

    // Publish phase.
    let cpu_before = server_cpu_ticks(&args.server_pid);
    let self_before = proc_cpu_ticks("/proc/self/stat");
    let server_core_before = core_jiffies(args.server_core);
    let loadgen_core_before = core_jiffies(args.loadgen_core);
    let wall_before = Instant::now();
    eprintln!(
        "publishing {} B events at {}/s for {} s",
        args.payload, args.rate, args.duration
    );
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start_us = now_us();
    let end = Instant::now() + Duration::from_secs(args.duration);
    let mut acked: Vec<bool> = Vec::new();
    let mut ack_us: Vec<u64> = Vec::new();
    let mut publish_errors = 0u64;
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let n = acked.len() as u64;
        let sent = Instant::now();
        match publish(&client, &args, &args.pub_url, n).await {
            Ok(()) => acked.push(true),
            Err(e) => {
                publish_errors += 1;
                acked.push(false);
                G.with(|g| g.borrow_mut().note_error(format!("publish: {e}")));
            }
        }
        ack_us.push(sent.elapsed().as_micros() as u64);
    }
    let publish_s = start_us.abs_diff(now_us()) as f64 / 1e6;
    let sent = acked.len() as u64;
    let acked_count = acked.iter().filter(|a| **a).count() as u64;
    eprintln!("published {acked_count}/{sent} acknowledged in {publish_s:.1} s; draining");

    // Wait for every subscriber to have every acknowledged publish, as long as deliveries
    // keep coming (a slow server is not a lossy one): stop at `drain` seconds without
    // progress, or after two minutes.
    let expected = acked_count * ready as u64;
    let drain_start = Instant::now();
    let (mut last_unique, mut last_progress) = (0u64, Instant::now());
    loop {
        let unique = G.with(|g| g.borrow().unique);
        if unique >= expected {
            break;
        }
        if unique != last_unique {
            (last_unique, last_progress) = (unique, Instant::now());
        }
        if last_progress.elapsed() > Duration::from_secs(args.drain)
            || drain_start.elapsed() > Duration::from_secs(120)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = server_cpu_ticks(&args.server_pid);
    let self_after = proc_cpu_ticks("/proc/self/stat");
    let server_core_busy = busy_pct(server_core_before, core_jiffies(args.server_core));
    let loadgen_core_busy = busy_pct(loadgen_core_before, core_jiffies(args.loadgen_core));
    let wall_s = wall_before.elapsed().as_secs_f64();

    let g = G.with(|g| std::mem::replace(&mut *g.borrow_mut(), Global::new()));
    let (mut lost, mut unacked_delivered, mut duplicates, mut out_of_order, mut seq_gaps) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut subs_missing = 0u64;
    for sub in g.subs.iter().filter(|s| s.ready) {
        let has = |n: u64| {
            sub.bits
                .get((n / 64) as usize)
                .is_some_and(|w| w & (1 << (n % 64)) != 0)
        };
        let mut missing = 0;
        for (n, ok) in acked.iter().enumerate() {
            match (ok, has(n as u64)) {
                (true, false) => missing += 1,
                (false, true) => unacked_delivered += 1,
                _ => {}
            }
        }
        lost += missing;
        subs_missing += u64::from(missing > 0);
        duplicates += u64::from(sub.duplicates);
        out_of_order += u64::from(sub.out_of_order);
        seq_gaps += u64::from(sub.seq_gaps);
    }
    let delivery_s = g.last_delivery_us.saturating_sub(start_us).max(1) as f64 / 1e6;
    let server_cpu_ms = (cpu_after - cpu_before) as f64 * 1000.0 / args.clk_tck as f64;
    let self_cpu_ms = (self_after - self_before) as f64 * 1000.0 / args.clk_tck as f64;
    let mut ack_sorted = ack_us.clone();
    ack_sorted.sort_unstable();
    let rss_per_conn_kb = if ready > 0 {
        (rss_after as f64 - rss_before as f64) / ready as f64
    } else {
        0.0
    };
    let report = serde_json::json!({
        "server": args.server.name(),
        "subscribers": n_subs,
        "subscribed": ready,
        "failed_subscribers": failed,
        "closed_streams": g.closed,
        "connect_s": round(connect_s, 1),
        "rate_asked": args.rate,
        "payload_bytes": args.payload,
        "duration_s": args.duration,
        "published": sent,
        "acked": acked_count,
        "publish_errors": publish_errors,
        "publish_rate": round(sent as f64 / publish_s, 2),
        "ack_p50_ms": round(quantile_ms(&ack_sorted, 0.50), 2),
        "ack_p99_ms": round(quantile_ms(&ack_sorted, 0.99), 2),
        "ack_max_ms": round(ack_sorted.last().copied().unwrap_or(0) as f64 / 1000.0, 2),
        "expected_deliveries": expected,
        "deliveries": g.deliveries,
        "lost": lost,
        "subscribers_missing_some": subs_missing,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "seq_gaps": seq_gaps,
        "unacked_delivered": unacked_delivered,
        "other_frames": g.other_frames,
        "deliveries_per_s": (g.deliveries as f64 / delivery_s).round(),
        "p1_ms": round(g.hist.quantile_ms(0.01), 2),
        "p50_ms": round(g.hist.quantile_ms(0.50), 2),
        "p99_ms": round(g.hist.quantile_ms(0.99), 2),
        "p999_ms": round(g.hist.quantile_ms(0.999), 2),
        "max_ms": round(g.hist.max_us as f64 / 1000.0, 2),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_per_conn_kb": round(rss_per_conn_kb, 2),
        "server_cpu_ms": server_cpu_ms,
        "cpu_ms_per_1k_deliveries": if g.deliveries > 0 { round(server_cpu_ms * 1000.0 / g.deliveries as f64, 3) } else { 0.0 },
        "deliveries_per_cpu_s": if server_cpu_ms > 0.0 { (g.deliveries as f64 / (server_cpu_ms / 1000.0)).round() } else { 0.0 },
        "loadgen_cpu_pct": round(self_cpu_ms / 10.0 / wall_s, 1),
        "server_core_busy_pct": server_core_busy,
        "loadgen_core_busy_pct": loadgen_core_busy,
        "window_s": round(wall_s, 2),
        "errors": g.error_list(),
    });
    println!("{report}");
    // Ten thousand sockets close with the process.
    std::process::exit(0);
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(args));
}
