//! The benchmarks' pipelined client: one connection keeping a window of identical requests in
//! flight against a server, counting and timing the responses inside a measured window.

use bytes::{Bytes, BytesMut};
use rmq_lifecycle::core::remoting::{FrameDecoder, code, decode_frame};
use std::collections::VecDeque;
use std::io;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one client connection saw.
#[derive(Default)]
pub(super) struct ConnResult {
    /// `SUCCESS` responses inside the measured window.
    pub(super) ok: u64,
    /// Other responses inside the measured window.
    pub(super) errors: u64,
    /// The first response that was not `SUCCESS`, anywhere: code and remark.
    pub(super) first_error: Option<String>,
    /// `SUCCESS` responses over the connection's life (warm-up and drain included): what the
    /// broker acknowledged, to compare with what it stored.
    pub(super) ok_total: u64,
    /// Send to response, ns, of the responses counted in `ok`.
    pub(super) latencies: Vec<u64>,
}

/// The start of a JSON response header with code 0, as `RemotingCommand::encode` writes it
/// (fields sorted, `code` first): a cheap check that leaves the client's cost to the wire.
pub(super) const SUCCESS_PREFIX: &[u8] = b"{\"code\":0,";

/// `Ok` if `frame` (length prefix included) is a `SUCCESS` response, else what it was.
pub(super) fn check_success(frame: Bytes) -> Result<(), String> {
    if frame.get(8..8 + SUCCESS_PREFIX.len()) == Some(SUCCESS_PREFIX) {
        return Ok(());
    }
    match decode_frame(frame.slice(4..)) {
        Ok(r) if r.is_response() && r.code == code::SUCCESS => Ok(()),
        Ok(r) => Err(format!(
            "code {} ({})",
            r.code,
            r.remark.as_deref().unwrap_or("no remark")
        )),
        Err(error) => Err(format!("undecodable response: {error}")),
    }
}

/// One client connection: keeps `window` sends in flight until `end`, then collects the
/// answers still owed. Responses come in the order sent (one connection is answered in order),
/// so each one's send time is the oldest outstanding.
pub(super) async fn client_connection(
    mut stream: TcpStream,
    frame: Bytes,
    window: usize,
    measure_from: Instant,
    end: Instant,
    keep_latencies: bool,
) -> io::Result<ConnResult> {
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * window)
        .collect();
    let mut out = ConnResult::default();
    if keep_latencies {
        out.latencies.reserve(1 << 16);
    }
    let decoder = FrameDecoder::default();
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let now = Instant::now();
    sent_at.extend(std::iter::repeat_n(now, window));
    stream.write_all(&burst).await?;
    while !sent_at.is_empty() {
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        if stream.read_buf(&mut inbuf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let now = Instant::now();
        let measured = now >= measure_from && now < end;
        let mut answered = 0;
        while let Some(len) = decoder
            .pending_frame_len(&inbuf)
            .filter(|&l| inbuf.len() >= l)
        {
            let response = inbuf.split_to(len).freeze();
            answered += 1;
            let sent = sent_at
                .pop_front()
                .ok_or_else(|| io::Error::other("a response to no outstanding request"))?;
            match check_success(response) {
                Ok(()) => {
                    out.ok_total += 1;
                    if measured {
                        out.ok += 1;
                        if keep_latencies {
                            out.latencies.push((now - sent).as_nanos() as u64);
                        }
                    }
                }
                Err(what) => {
                    out.first_error.get_or_insert(what);
                    if measured {
                        out.errors += 1;
                    }
                }
            }
        }
        if now < end && answered > 0 {
            let now = Instant::now();
            sent_at.extend(std::iter::repeat_n(now, answered));
            stream.write_all(&burst[..frame.len() * answered]).await?;
        }
    }
    Ok(out)
}

/// The `q` quantile of `latencies` (ns), in microseconds; 0 for none.
pub(super) fn quantile_us(latencies: &mut [u64], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let rank = ((q * latencies.len() as f64).ceil() as usize).max(1);
    latencies[rank - 1] as f64 / 1e3
}
