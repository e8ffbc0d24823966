//! `bench ha`, idle connection memory: live heap bytes per idle, caught-up replication
//! connection, master side alone and both sides.

use super::*;

pub(super) struct IdleMemory {
    pub(super) master_side: f64,
    /// One heartbeat interval after catching up.
    pub(super) both_sides: f64,
    /// Right after catching up ([`IDLE_SETTLE`]).
    pub(super) both_sides_caught_up: f64,
    /// Heap bytes per connection still held after the fake slaves closed and the master
    /// removed them (runtime slabs that only grow are the expected part).
    pub(super) left_after_close: f64,
}

/// A fake slave on a blocking-free std socket: everything it needs is allocated before the
/// measurement, so the heap growth is the master's.
pub(super) struct FakeSlave {
    pub(super) sock: std::net::TcpStream,
    pub(super) decoder: TransferDecoder,
    pub(super) have: u64,
    pub(super) reported: u64,
}

impl IdleMemory {
    pub(super) fn measure(rts: &Runtimes) -> io::Result<IdleMemory> {
        let dir = tempfile::tempdir()?;
        let ha = ha_config(SMALL_SEGMENT);
        let log = open_log(&dir.path().join("master"), SMALL_SEGMENT)?;
        for i in 0..IDLE_LOG_BYTES / 4096 {
            log.append(&[i as u8; 4096 - HEADER_LEN as usize])?;
        }
        let end = log.max_offset();
        let tasks = TaskGauge::new();
        let master = bind_master(rts, ha, log, &tasks)?;
        let addr = master.local_addr();
        let registry = master.registry().clone();

        // The master's side: fake slaves driven from this thread.
        let mut fakes: Vec<FakeSlave> = Vec::with_capacity(IDLE_CONNECTIONS);
        let mut buf = vec![0u8; 64 * 1024];
        let before = live_bytes();
        for _ in 0..IDLE_CONNECTIONS {
            let mut sock = std::net::TcpStream::connect(addr)?;
            sock.set_nodelay(true)?;
            sock.write_all(&encode_report(0))?;
            sock.set_nonblocking(true)?;
            fakes.push(FakeSlave {
                sock,
                decoder: TransferDecoder::new(ha.body_max),
                have: 0,
                reported: 0,
            });
        }
        wait_for("the fake slaves to catch up", || {
            let mut all = true;
            for f in fakes.iter_mut() {
                if f.pump(&mut buf).is_err() {
                    return true; // reported below as a short catch-up
                }
                all &= f.reported >= end;
            }
            all && registry.acked_at_least(end) == IDLE_CONNECTIONS
        })?;
        if fakes.iter().any(|f| f.reported < end) {
            return Err(other("a fake slave's connection failed"));
        }
        std::thread::sleep(IDLE_SETTLE);
        let master_side = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;
        drop(fakes);
        wait_for("the master to drop the fake slaves", || {
            registry.count() == 0
        })?;
        std::thread::sleep(IDLE_SETTLE);
        let left_after_close = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;

        // Both sides: real slaves, their logs opened beforehand (a log is not connection state).
        let logs = (0..IDLE_CONNECTIONS)
            .map(|i| open_log(&dir.path().join(format!("slave-{i}")), SMALL_SEGMENT))
            .collect::<io::Result<Vec<_>>>()?;
        let slave_tasks = TaskGauge::new();
        let mut slaves = Vec::with_capacity(IDLE_CONNECTIONS);
        let before = live_bytes();
        for slave_log in &logs {
            slaves.push(start_slave(
                rts,
                ha,
                HaMode::Classic,
                addr,
                slave_log.clone(),
                &slave_tasks,
            ));
        }
        wait_for("the slaves to catch up", || {
            logs.iter().all(|l| l.max_offset() >= end)
                && registry.acked_at_least(end) == IDLE_CONNECTIONS
        })?;
        let caught_up = Instant::now();
        std::thread::sleep(IDLE_SETTLE);
        let both_sides_caught_up = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;
        // Past one heartbeat interval both sides have run their idle timers (a connection may
        // release buffers there).
        sleep_until(caught_up + Duration::from_millis(ha.heartbeat_ms) + IDLE_SETTLE);
        let both_sides = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;

        // The slaves share one gauge: cancel them all (drop), then wait for the gauge.
        drop(slaves);
        let _ = wait_for("the slaves to stop", || slave_tasks.alive() == 0);
        let left =
            slave_tasks.alive() + rts.server.block_on(master.shutdown(Duration::from_secs(5)));
        if left > 0 {
            return Err(other(format!("{left} task(s) alive after shutdown")));
        }
        Ok(IdleMemory {
            master_side,
            both_sides,
            both_sides_caught_up,
            left_after_close,
        })
    }
}

impl FakeSlave {
    /// Reads what is there, and reports the new end once a body completes.
    pub(super) fn pump(&mut self, buf: &mut [u8]) -> io::Result<()> {
        loop {
            match self.sock.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    let mut input = &buf[..n];
                    while let Some(chunk) = self.decoder.next(&mut input).map_err(other)? {
                        if let TransferChunk::Body { offset, bytes } = chunk {
                            self.have = offset + bytes.len() as u64;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.have > self.reported && !self.decoder.in_body() {
            match self.sock.write(&encode_report(self.have)) {
                Ok(8) => self.reported = self.have,
                Ok(_) => return Err(other("a short write of an 8-byte report")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
