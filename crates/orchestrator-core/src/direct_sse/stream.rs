//! A subscription's stream, written straight to its socket until either side ends it.

use std::io::IoSlice;
use std::pin::Pin;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::FutureExt;
use picloud_shared::ApiError;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::head::SubscribeHead;
use super::response::{error_response, response_head};
use crate::broadcaster::Broadcaster;
use crate::fanout::Link;
use crate::realtime_api::{start, RealtimeState};
use crate::stream::Subscription;

/// Serves a recognised subscription on the stream runtime (see
/// [`crate::stream_runtime`]); see [`open`]. `held` is dropped when the stream ends.
///
/// A subscriber's task lives as long as its stream, so its size is memory per idle
/// connection: the checks and the response head ([`open`], with everything the request
/// brought) run in a boxed future that is freed once the stream starts, and the task
/// keeps only what [`pump`] needs.
#[allow(clippy::too_many_arguments)] // each is one thing the stream needs or holds
pub(super) fn spawn(
    rt: RealtimeState,
    socket: TcpStream,
    head: SubscribeHead,
    response_headers: HeaderMap,
    request_id: String,
    span: tracing::Span,
    on_status: impl FnOnce(StatusCode) + Send + 'static,
    held: impl Send + 'static,
) {
    // A socket belongs to the runtime that registered it: move it over.
    let Ok(socket) = socket.into_std() else {
        return;
    };
    let runtime = rt.streams.clone();
    let broadcaster = rt.broadcaster.clone();
    let opening = Box::pin(async move {
        let socket = TcpStream::from_std(socket).ok()?;
        open(
            rt,
            socket,
            head,
            response_headers,
            &request_id,
            span,
            on_status,
        )
        .await
    });
    runtime.spawn(async move {
        // Whatever the caller holds for the stream's life (its connection slot).
        let _held = held;
        let Some((subscription, socket)) = opening.await else {
            return;
        };
        if let Ok(mut writer) = pump(subscription, socket, &broadcaster).await {
            let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
        }
    });
}

/// Checks a recognised subscription on `socket` and writes its response head: the
/// subscription and the socket to stream on, or `None` once a refusal is written or the
/// client went away. `response_headers` (CORS) go on the response, whatever its status.
/// `on_status` is told the response status once the head is written (for request
/// metrics).
async fn open(
    rt: RealtimeState,
    mut socket: TcpStream,
    head: SubscribeHead,
    response_headers: HeaderMap,
    request_id: &str,
    span: tracing::Span,
    on_status: impl FnOnce(StatusCode),
) -> Option<(Subscription, TcpStream)> {
    let _ = socket.set_nodelay(true);
    // Requests with a cookie (a dashboard session) never come here: no superuser. The span
    // covers the checks; the stream itself is not instrumented (a span entered on every
    // frame is a measurable share of a fan-out).
    let started = start(&rt, &head.app, &head.query, &head.headers, false)
        .instrument(span)
        .await;
    let subscription = match started {
        Ok(subscription) => subscription,
        Err(error) => {
            let error = ApiError::from(error);
            let status = error.code.status();
            let _ = socket
                .write_all(&error_response(
                    status,
                    error,
                    &response_headers,
                    request_id,
                ))
                .await;
            let _ = socket.shutdown().await;
            on_status(status);
            return None;
        }
    };
    let mut response_head = response_head(StatusCode::OK, &response_headers, None);
    response_head.extend_from_slice(
        format!(
            "content-type: text/event-stream\r\ncache-control: no-cache\r\n\
             x-accel-buffering: no\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n"
        )
        .as_bytes(),
    );
    socket.write_all(&response_head).await.ok()?;
    on_status(StatusCode::OK);
    Some((subscription, socket))
}

/// Writes the stream's chunks to `socket` until the stream ends (`Ok`, with the write
/// half to close) or the client goes away (`Err`). Whenever the stream has sent
/// everything, it links to its topic's fan-out ([`crate::fanout`]), which then writes the
/// events, until it hands the stream back.
async fn pump(
    mut subscription: Subscription,
    socket: TcpStream,
    broadcaster: &Broadcaster,
) -> Result<OwnedWriteHalf, Gone> {
    let mut batch: Vec<Bytes> = Vec::new();
    let (mut reader, mut writer) = socket.into_split();
    let mut watch = ReadWatch::default();
    loop {
        if let Some((app, topic, pos)) = subscription.caught_up() {
            if let Some(fanout) = broadcaster.fanout(app, topic) {
                let link = Link::new(writer, pos);
                // A frame the fan-out may not offer (sent before the link joined) is in
                // the stream's channel: then the stream takes it from there.
                let linked = if fanout.join(link.clone()) && !subscription.has_ready() {
                    while_linked(&mut subscription, &link, &mut reader, &mut watch).await
                } else {
                    Ok(())
                };
                let Some(back) = link.take_back() else {
                    unreachable!("only the stream takes its socket back");
                };
                writer = back.writer;
                subscription.unlinked_at(back.pos);
                linked?;
                if let Some(rest) = back.rest {
                    batch.push(rest);
                    write_all_vectored(&mut writer, &mut batch)
                        .await
                        .map_err(|_| Gone)?;
                }
            }
        }
        // The read half is watched so a client that goes away frees its stream (and
        // its slot) at once, not at the next heartbeat's failed write.
        let first = tokio::select! {
            biased;
            read = reader.read(&mut watch.unread) => {
                watch.heard(read)?;
                continue;
            }
            chunk = subscription.next_chunk() => match chunk {
                Some(chunk) => chunk,
                None => return Ok(writer),
            },
        };
        // Whatever else is ready now goes out in the same write: a subscriber that fell
        // behind catches up with fewer system calls, so a busy server slows down less.
        batch.push(first);
        let mut bytes = batch[0].len();
        while batch.len() < MAX_BATCH_CHUNKS && bytes < MAX_BATCH_BYTES && subscription.has_ready()
        {
            match subscription.next_chunk().now_or_never() {
                Some(Some(chunk)) => {
                    bytes += chunk.len();
                    batch.push(chunk);
                }
                Some(None) | None => break,
            }
        }
        if write_all_vectored(&mut writer, &mut batch).await.is_err() {
            return Err(Gone);
        }
    }
}

/// Waits while the topic's fan-out writes the stream's events: sends the heartbeats and
/// token notices the stream makes meanwhile, and watches the client. `Ok` once the
/// stream must take its socket back: the fan-out handed it back, the socket did not take
/// a notice whole, or the stream is over (its last frames go out after the socket is
/// back, so no event can follow them).
async fn while_linked(
    subscription: &mut Subscription,
    link: &Link,
    reader: &mut OwnedReadHalf,
    watch: &mut ReadWatch,
) -> Result<(), Gone> {
    loop {
        tokio::select! {
            biased;
            read = reader.read(&mut watch.unread) => watch.heard(read)?,
            () = link.handed_back() => return Ok(()),
            () = subscription.wait_linked() => {
                if subscription.is_done() {
                    return Ok(());
                }
                while let Some(chunk) = subscription.pop_pending() {
                    if !link.write_now(&chunk) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The read half's watch: a subscriber has nothing more to say, and what it sends anyway
/// is dropped, up to a bound.
struct ReadWatch {
    unread: [u8; 64],
    discarded: usize,
}

impl Default for ReadWatch {
    fn default() -> Self {
        ReadWatch {
            unread: [0; 64],
            discarded: 0,
        }
    }
}

impl ReadWatch {
    /// Takes a read's outcome: `Err` once the client closed, reset, or said too much.
    fn heard(&mut self, read: std::io::Result<usize>) -> Result<(), Gone> {
        match read {
            Ok(n) if n > 0 && self.discarded + n <= MAX_DISCARDED => {
                self.discarded += n;
                Ok(())
            }
            _ => Err(Gone),
        }
    }
}

/// The client went away (or was too chatty) while its stream ran.
struct Gone;

/// Most bytes a subscriber may send while its stream runs before it is closed.
const MAX_DISCARDED: usize = 16 * 1024;

/// Most chunks gathered into one write.
const MAX_BATCH_CHUNKS: usize = 64;

/// Most bytes gathered into one write (a batch may end up to one chunk over).
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Writes every chunk of `batch` (emptying it) with as few system calls as the socket
/// takes.
async fn write_all_vectored(
    socket: &mut (impl AsyncWrite + Unpin),
    batch: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    if let [only] = batch.as_slice() {
        socket.write_all(only).await?;
        batch.clear();
        return Ok(());
    }
    let mut start = 0;
    while start < batch.len() {
        // The slices are made anew on each poll, so they take no room in the stream's
        // task while it waits.
        let mut written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_BATCH_CHUNKS];
            let count = (batch.len() - start).min(MAX_BATCH_CHUNKS);
            for (slice, chunk) in slices.iter_mut().zip(&batch[start..start + count]) {
                *slice = IoSlice::new(chunk);
            }
            Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while start < batch.len() && written >= batch[start].len() {
            written -= batch[start].len();
            start += 1;
        }
        if written > 0 {
            let rest = batch[start].slice(written..);
            batch[start] = rest;
        }
    }
    batch.clear();
    Ok(())
}
