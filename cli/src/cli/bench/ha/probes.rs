//! `bench ha`, probes: connect-and-close probes against the HA port beside an accept-and-drop
//! listener, and what they leave behind.

use super::*;

/// What the probes left at quiescence (all must be 0).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Leaked {
    pub(super) connections: usize,
    pub(super) tasks: isize,
    pub(super) fds: isize,
}

pub(super) struct Probes {
    /// `ListenOverflows` during the probes (want 0; namespace-wide).
    pub(super) listen_overflows: u64,
    pub(super) ours_time: Duration,
    pub(super) base_time: Duration,
    pub(super) ours_cpu: Cpu,
    pub(super) base_cpu: Cpu,
    pub(super) errors: u64,
    pub(super) leaked: Leaked,
    pub(super) accepted: u64,
    pub(super) closed: u64,
}

/// A listener that accepts and drops, counting.
pub(super) struct DropListener {
    pub(super) addr: SocketAddr,
    pub(super) accepted: Arc<AtomicU64>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl DropListener {
    pub(super) fn bind(rt: &Runtime) -> io::Result<Self> {
        let listener = rt.block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = rt.spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(DropListener {
            addr,
            accepted,
            task,
        })
    }
}

/// A server-side count of probes fully handled.
type Done = Arc<dyn Fn() -> u64 + Send + Sync>;

impl Probes {
    pub(super) fn measure(rts: &Runtimes) -> io::Result<Probes> {
        let dir = tempfile::tempdir()?;
        let tasks = TaskGauge::new();
        let master = bind_master(
            rts,
            ha_config(SMALL_SEGMENT),
            open_log(dir.path(), SMALL_SEGMENT)?,
            &tasks,
        )?;
        let logs = [dir.path()];
        let (tasks0, fds0) = (tasks.alive(), open_fds(&logs));
        let base = DropListener::bind(&rts.server)?;
        let registry = master.registry().clone();
        let ours_done: Done = Arc::new(move || registry.closed_total());
        let accepted = base.accepted.clone();
        let base_done: Done = Arc::new(move || accepted.load(Ordering::Relaxed));

        let overflows0 = listen_overflows();
        let mut out = Probes {
            listen_overflows: 0,
            ours_time: Duration::ZERO,
            base_time: Duration::ZERO,
            ours_cpu: Cpu::default(),
            base_cpu: Cpu::default(),
            errors: 0,
            leaked: Leaked::default(),
            accepted: 0,
            closed: 0,
        };
        let per_round = PROBES / PROBE_ROUNDS;
        for _ in 0..PROBE_ROUNDS {
            let (t, cpu, errors) = probe_run(rts, base.addr, per_round, &base_done)?;
            out.base_time += t;
            out.base_cpu.add(cpu);
            out.errors += errors;
            let (t, cpu, errors) = probe_run(rts, master.local_addr(), per_round, &ours_done)?;
            out.ours_time += t;
            out.ours_cpu.add(cpu);
            out.errors += errors;
        }
        out.listen_overflows = listen_overflows().saturating_sub(overflows0);
        base.task.abort();
        drop(base);

        // Quiescence: no row, tasks and fds back to their baseline (or give up after a while).
        let registry = master.registry();
        let leaked = || Leaked {
            connections: registry.count(),
            tasks: tasks.alive() as isize - tasks0 as isize,
            fds: open_fds(&logs) as isize - fds0 as isize,
        };
        let _ = wait_for("quiescence after the probes", || {
            let l = leaked();
            l.connections == 0 && l.tasks == 0 && l.fds == 0
        });
        out.leaked = leaked();
        out.accepted = registry.accepted_total();
        out.closed = registry.closed_total();
        let left = rts.server.block_on(master.shutdown(Duration::from_secs(5)));
        if left > 0 {
            return Err(other(format!("{left} master task(s) alive after shutdown")));
        }
        Ok(out)
    }
}

/// `n` connect-and-close probes from [`PROBERS`] tasks against `addr`; returns the time until
/// the server handled all of them (`done` grew by `n`), the CPU used meanwhile, and the
/// connects that failed.
pub(super) fn probe_run(
    rts: &Runtimes,
    addr: SocketAddr,
    n: usize,
    done: &Done,
) -> io::Result<(Duration, Cpu, u64)> {
    let done0 = done();
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let probers: Vec<_> = (0..PROBERS)
        .map(|_| {
            let (issued, errors, done) = (issued.clone(), errors.clone(), done.clone());
            rts.client.spawn(async move {
                loop {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    while i as u64 >= done() - done0 + PROBE_WINDOW {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    match TcpStream::connect(addr).await {
                        Ok(stream) => drop(stream),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    rts.client.block_on(async {
        for p in probers {
            p.await.expect("a prober does not panic");
        }
    });
    let errors = errors.load(Ordering::Relaxed);
    let want = n as u64 - errors;
    wait_for("the server to handle every probe", || {
        done() - done0 >= want
    })?;
    Ok((t0.elapsed(), Cpu::now().since(cpu0), errors))
}
