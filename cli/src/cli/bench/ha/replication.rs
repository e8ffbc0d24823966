//! `bench ha`, replication and sync wait: a slave catching up a log beside raw copies of the same
//! bytes, `wait_for_replication` beside a ping-pong of the same task hops, and open times.

use super::*;

/// One timed transfer of the log's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Transfer {
    pub(super) bytes: u64,
    pub(super) time: Duration,
    pub(super) cpu: Cpu,
}

impl Transfer {
    /// The round with the median rate (the upper one of an even count).
    pub(super) fn median(rounds: &[Transfer]) -> Transfer {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(|a, b| a.mib_per_sec().total_cmp(&b.mib_per_sec()));
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    pub(super) fn rounds_mb_per_sec(rounds: &[Transfer]) -> Vec<f64> {
        rounds.iter().map(|t| round(t.mib_per_sec(), 1)).collect()
    }

    pub(super) fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.time.as_secs_f64()
    }

    /// CPU milliseconds per GiB moved: (server, client).
    pub(super) fn cpu_ms_per_gib(&self) -> CpuPerGib {
        let per = |d: Duration| {
            round(
                d.as_secs_f64() * 1e3 * (1u64 << 30) as f64 / self.bytes as f64,
                1,
            )
        };
        CpuPerGib {
            server: per(self.cpu.server),
            client: per(self.cpu.client),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct CpuPerGib {
    pub(super) server: f64,
    pub(super) client: f64,
}

/// The timed transfers of every round, in round order.
pub(super) struct Replication {
    pub(super) default_batch: Vec<Transfer>,
    pub(super) large_batch: Vec<Transfer>,
    /// Auto-switch (epochs, handshake, epoch-bounded 32 KiB batches), same log.
    pub(super) auto_switch: Vec<Transfer>,
    /// Segment files -> socket -> discarded: the raw copy.
    pub(super) raw_socket: Vec<Transfer>,
    /// Segment files -> socket -> a file: also the slave's page-cache write.
    pub(super) raw_file: Vec<Transfer>,
    pub(super) identical: bool,
    pub(super) setup: Duration,
}

pub(super) struct SyncWait {
    pub(super) ours: Vec<u64>,
    pub(super) base: Vec<u64>,
}

/// Fills a log with [`LOG_BYTES`] of records; then, [`REPLICATION_ROUNDS`] times, times the two
/// raw copies and fresh slaves catching it up with each batch size. Sync waits are measured in
/// the first round, with its 32 KiB slave still connected.
pub(super) fn replication_and_sync(rts: &Runtimes) -> io::Result<(Replication, SyncWait)> {
    progress("writing the 1 GiB master log");
    let t = Instant::now();
    let master_dir = tempfile::tempdir()?;
    let log = open_log(master_dir.path(), SEGMENT)?;
    let mut payload = vec![0u8; (RECORD - HEADER_LEN) as usize];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for i in 0..LOG_BYTES / RECORD {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        log.append(&payload)?;
    }
    drop(payload);
    // Written back now rather than during a measurement.
    log.flush()?;
    let setup = t.elapsed();
    let ha = ha_config(SEGMENT);
    let large_ha = HaConfig {
        batch_max: LARGE_BATCH,
        ..ha
    };
    // One gauge per master and per slave: each shutdown waits for its own gauge to reach 0.
    let gauge = TaskGauge::new;
    let (dir, bytes) = (master_dir.path(), log.max_offset());
    let master = bind_master(rts, ha, log.clone(), &gauge())?;
    let large_master = bind_master(rts, large_ha, log.clone(), &gauge())?;
    // Begins epoch 1 at the log's end (the log's bytes become epoch 0): the slaves' handshakes
    // and every transfer then carry epochs, as on a broker that ran classic before.
    let auto_master = bind_master_in(rts, ha, HaMode::AutoSwitch, log.clone(), &gauge())?;

    let mut r = Replication {
        default_batch: Vec::new(),
        large_batch: Vec::new(),
        auto_switch: Vec::new(),
        raw_socket: Vec::new(),
        raw_file: Vec::new(),
        identical: true,
        setup,
    };
    let mut sync = None;
    let mut left = 0;
    for round in 1..=REPLICATION_ROUNDS {
        progress(&format!(
            "replication round {round} of {REPLICATION_ROUNDS}: raw copies, then slaves with 32 KiB and 1 MiB batches, and auto-switch"
        ));
        r.raw_socket.push(raw_copy_run(rts, dir, bytes, false)?);
        r.raw_file.push(raw_copy_run(rts, dir, bytes, true)?);
        // Each round starts with another slave: the copy into a new file's page cache drifts
        // within a round as much as between rounds, so no slave always runs first or last.
        let mut slaves = [
            (&master, ha, HaMode::Classic),
            (&large_master, large_ha, HaMode::Classic),
            (&auto_master, ha, HaMode::AutoSwitch),
        ];
        slaves.rotate_left((round - 1) % 3);
        for (master, ha, mode) in slaves {
            let slave_dir = tempfile::tempdir()?;
            let slave_log = open_log(slave_dir.path(), SEGMENT)?;
            if mode == HaMode::Classic {
                seed_first_record(master.log(), &slave_log)?;
            }
            let (transfer, slave) = catch_up(rts, master, ha, mode, &slave_log, &gauge())?;
            let end = master.log().max_offset();
            r.identical &= slave_log.digest(0, end)? == master.log().digest(0, end)?;
            if mode == HaMode::AutoSwitch {
                r.identical &= slave_log.epochs() == master.log().epochs();
                r.auto_switch.push(transfer);
            } else if ha.batch_max == LARGE_BATCH {
                r.large_batch.push(transfer);
            } else {
                r.default_batch.push(transfer);
                if sync.is_none() {
                    progress("sync waits");
                    sync = Some(sync_waits(rts, master)?);
                }
            }
            left += rts.client.block_on(slave.shutdown(Duration::from_secs(30)));
        }
    }
    let left = left
        + rts
            .server
            .block_on(auto_master.shutdown(Duration::from_secs(5)))
        + rts
            .server
            .block_on(large_master.shutdown(Duration::from_secs(5)))
        + rts.server.block_on(master.shutdown(Duration::from_secs(5)));
    if left > 0 {
        return Err(other(format!("{left} HA task(s) alive after shutdown")));
    }
    let sync = sync.ok_or_else(|| other("no replication round ran"))?;
    Ok((r, sync))
}

/// `CommitLog::open` of a 4 MiB log and of a large one (up to four sealed 1 GiB segments, as
/// many as the temp directory has room for) with the same 4 MiB in its active segment: recovery
/// reads the active segment only, so the two should take about as long. Warm (the page cache
/// holds both), the median of [`OPEN_ROUNDS`] each, alternating.
pub(super) struct OpenTimes {
    pub(super) small: Duration,
    pub(super) large: Duration,
    pub(super) large_bytes: u64,
}

pub(super) const OPEN_SEGMENT: u64 = 1 << 30;
pub(super) const OPEN_SEALED: u64 = 4;
pub(super) const OPEN_ACTIVE: u64 = 4 << 20;
pub(super) const OPEN_ROUNDS: usize = 7;

/// Bytes left free beside the open-time logs, for the rest of the machine.
const OPEN_SPARE: u64 = 1 << 30;

/// How many sealed segments the large open-time log gets: [`OPEN_SEALED`] where the temp
/// directory has room for them and [`OPEN_SPARE`] beside, fewer where it has not (a CI machine's
/// temp directory may be a small tmpfs), and a clear error where not even one fits.
fn sealed_segments_that_fit() -> io::Result<u64> {
    let dir = std::env::temp_dir();
    let st = rustix::fs::statvfs(&dir)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let sealed =
        (free.saturating_sub(2 * OPEN_ACTIVE + OPEN_SPARE) / OPEN_SEGMENT).min(OPEN_SEALED);
    if sealed == 0 {
        return Err(other(format!(
            "the open times need {} MiB free in {} and it has {} MiB (set TMPDIR to a larger file system)",
            (OPEN_SEGMENT + 2 * OPEN_ACTIVE + OPEN_SPARE) >> 20,
            dir.display(),
            free >> 20
        )));
    }
    Ok(sealed)
}

pub(super) fn open_times() -> io::Result<OpenTimes> {
    let sealed = sealed_segments_that_fit()?;
    progress(&format!(
        "writing a 4 MiB and a {sealed} GiB log for the open times"
    ));
    let payload = vec![0xA5u8; (RECORD - HEADER_LEN) as usize];
    let build = |sealed: u64| -> io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let log = open_log(dir.path(), OPEN_SEGMENT)?;
        for _ in 0..(sealed * OPEN_SEGMENT + OPEN_ACTIVE) / RECORD {
            log.append(&payload)?;
        }
        log.flush()?;
        Ok(dir)
    };
    let (small_dir, large_dir) = (build(0)?, build(sealed)?);
    let time = |dir: &Path| -> io::Result<(Duration, u64)> {
        let t = Instant::now();
        let log = open_log(dir, OPEN_SEGMENT)?;
        let elapsed = t.elapsed();
        Ok((elapsed, log.max_offset()))
    };
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut large_bytes = 0;
    for _ in 0..OPEN_ROUNDS {
        small.push(time(small_dir.path())?.0);
        let (t, bytes) = time(large_dir.path())?;
        large.push(t);
        large_bytes = bytes;
    }
    small.sort();
    large.sort();
    Ok(OpenTimes {
        small: small[OPEN_ROUNDS / 2],
        large: large[OPEN_ROUNDS / 2],
        large_bytes,
    })
}

/// Writes and deletes `bytes` of scratch file right before a run that writes that much into new
/// files (a slave, the copy into a file), so that the page cache pages it gets are memory this VM
/// touched a moment ago rather than, possibly, never: on a VM a first touch also faults on the
/// host. The copy into the page cache still varies from run to run (0.6 to 2 CPU seconds per GiB
/// for the same code), hence the rounds. Both sides of every to-file comparison are warmed alike;
/// the discarding raw copy writes no file.
pub(super) fn warm_page_cache(bytes: u64) -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = std::fs::File::create(dir.path().join("warm"))?;
    let chunk = vec![0x5Au8; RAW_CHUNK];
    let mut pos = 0;
    while pos < bytes {
        file.write_all_at(&chunk, pos)?;
        pos += RAW_CHUNK as u64;
    }
    Ok(())
}

/// Starts a slave on the empty `slave_log` and times it until it holds the master's log.
pub(super) fn catch_up(
    rts: &Runtimes,
    master: &HaMaster,
    ha: HaConfig,
    mode: HaMode,
    slave_log: &Arc<CommitLog>,
    tasks: &TaskGauge,
) -> io::Result<(Transfer, HaSlave)> {
    let end = master.log().max_offset();
    let from = slave_log.max_offset();
    warm_page_cache(end)?;
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let slave = start_slave(rts, ha, mode, master.local_addr(), slave_log.clone(), tasks);
    wait_for("the slave to catch up", || slave_log.max_offset() >= end)?;
    let transfer = Transfer {
        bytes: end - from,
        time: t0.elapsed(),
        cpu: Cpu::now().since(cpu0),
    };
    Ok((transfer, slave))
}

/// Copies the master's first record into an empty slave log. A classic master sends a slave
/// whose first report is 0 only the last segment (as upstream's does); a slave that already holds
/// a prefix, as one made from a copy of the store does, is sent the rest, so the classic slaves
/// here catch up all but one record of the log.
fn seed_first_record(master: &CommitLog, slave: &CommitLog) -> io::Result<()> {
    let mut first = Vec::new();
    master.read(0, RECORD as usize, &mut first)?;
    slave.append_raw(0, &first)?;
    Ok(())
}

/// The baseline: the first `bytes` of the segment files in `dir`, read with `pread` in
/// [`RAW_CHUNK`]s by a task on the server runtime and written to a socket; a task on the client
/// runtime reads them into a [`RAW_CHUNK`] buffer and, if `to_file`, writes them with `pwrite`
/// into one file in a temp dir. Timed from connect to the last byte received (and written).
pub(super) fn raw_copy_run(
    rts: &Runtimes,
    dir: &Path,
    bytes: u64,
    to_file: bool,
) -> io::Result<Transfer> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    segments.sort();
    let files = segments
        .iter()
        .map(std::fs::File::open)
        .collect::<io::Result<Vec<_>>>()?;
    let sink_dir = tempfile::tempdir()?;
    let sink = std::fs::File::create(sink_dir.path().join("copy"))?;
    if to_file {
        warm_page_cache(bytes)?;
    }
    let listener = rts
        .server
        .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    let addr = listener.local_addr()?;

    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let sender = rts.server.spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let mut buf = vec![0u8; RAW_CHUNK];
        let mut left = bytes;
        for file in &files {
            let mut pos = 0u64;
            while left > 0 {
                let want = (left as usize).min(RAW_CHUNK);
                let n = file.read_at(&mut buf[..want], pos)?;
                if n == 0 {
                    break; // the next segment
                }
                sock.write_all(&buf[..n]).await?;
                pos += n as u64;
                left -= n as u64;
            }
        }
        if left > 0 {
            return Err(other(format!(
                "the segment files hold {left} bytes too few"
            )));
        }
        Ok::<(), io::Error>(())
    });
    let receiver = rts.client.spawn(async move {
        let mut sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut buf = vec![0u8; RAW_CHUNK];
        let mut pos = 0u64;
        while pos < bytes {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            if to_file {
                sink.write_all_at(&buf[..n], pos)?;
            }
            pos += n as u64;
        }
        Ok::<(), io::Error>(())
    });
    rts.client.block_on(receiver).map_err(other)??;
    let time = t0.elapsed();
    let cpu = Cpu::now().since(cpu0);
    rts.server.block_on(sender).map_err(other)??;
    Ok(Transfer { bytes, time, cpu })
}

/// Alternating rounds: append [`SYNC_PAYLOAD`] bytes and wait for the slave's ack (ours); a
/// round trip of the same sizes through the same task hops (baseline).
pub(super) fn sync_waits(rts: &Runtimes, master: &HaMaster) -> io::Result<SyncWait> {
    let mut out = SyncWait {
        ours: Vec::with_capacity(SYNC_WAITS),
        base: Vec::with_capacity(SYNC_WAITS),
    };
    let payload = vec![7u8; SYNC_PAYLOAD];
    let frame_len = 12 + HEADER_LEN as usize + SYNC_PAYLOAD;
    let base = PingPong::start(rts, frame_len)?;
    let per_round = SYNC_WAITS / SYNC_ROUNDS;
    for _ in 0..SYNC_ROUNDS {
        rts.server.block_on(async {
            for _ in 0..per_round {
                let t = Instant::now();
                let appended = master.append(&payload)?;
                master
                    .wait_for_replication(appended.end, 1, Duration::from_secs(10))
                    .await
                    .map_err(other)?;
                out.ours.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<(), io::Error>(())
        })?;
        base.run(rts, per_round, &mut out.base)?;
    }
    base.stop(rts)?;
    Ok(out)
}

/// The sync-wait baseline: the main thread kicks a writer task (server runtime) through a watch
/// channel; it writes a frame of the transfer's size; a peer task (client runtime) reads it and
/// answers 8 bytes; a reader task (server runtime) reads them and bumps a watch channel that the
/// main thread waits on: ours' hops and sizes, without log IO or protocol.
pub(super) struct PingPong {
    pub(super) kick: watch::Sender<u64>,
    pub(super) acked: watch::Receiver<u64>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<io::Result<()>>>,
}

impl PingPong {
    pub(super) fn start(rts: &Runtimes, frame_len: usize) -> io::Result<PingPong> {
        let listener = rts
            .server
            .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        let addr = listener.local_addr()?;
        let peer = rts.client.spawn(async move {
            let mut sock = TcpStream::connect(addr).await?;
            sock.set_nodelay(true)?;
            let mut frame = vec![0u8; frame_len];
            loop {
                match sock.read_exact(&mut frame).await {
                    Ok(_) => sock.write_all(&encode_report(frame_len as u64)).await?,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let (sock, _) = rts.server.block_on(listener.accept())?;
        sock.set_nodelay(true)?;
        let (mut rd, mut wr) = sock.into_split();
        let (kick, mut kicked) = watch::channel(0u64);
        let (ack, acked) = watch::channel(0u64);
        let writer = rts.server.spawn(async move {
            let frame = vec![1u8; frame_len];
            while kicked.changed().await.is_ok() {
                wr.write_all(&frame).await?;
            }
            Ok(())
        });
        let reader = rts.server.spawn(async move {
            let mut report = [0u8; 8];
            loop {
                match rd.read_exact(&mut report).await {
                    Ok(_) => {
                        ack.send_modify(|n| *n += 1);
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        Ok(PingPong {
            kick,
            acked,
            tasks: vec![peer, writer, reader],
        })
    }

    pub(super) fn run(&self, rts: &Runtimes, n: usize, samples: &mut Vec<u64>) -> io::Result<()> {
        let mut acked = self.acked.clone();
        rts.server.block_on(async {
            for _ in 0..n {
                let t = Instant::now();
                let want = *acked.borrow_and_update() + 1;
                self.kick.send_modify(|k| *k += 1);
                while *acked.borrow_and_update() < want {
                    acked.changed().await.map_err(other)?;
                }
                samples.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        })
    }

    pub(super) fn stop(self, rts: &Runtimes) -> io::Result<()> {
        drop(self.kick);
        for task in self.tasks {
            rts.server.block_on(task).map_err(other)??;
        }
        Ok(())
    }
}
