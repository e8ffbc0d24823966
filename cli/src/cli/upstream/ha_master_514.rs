//! Upstream 5.1.4's HA accept path (`DefaultHAService.AcceptSocketService.run`), emulated on
//! tokio for the side-by-side replay: `conn = createConnection(sc); conn.start();
//! addConnection(conn);`.
//!
//! What is kept from upstream, because it is what leaked:
//! * the connection's reader and writer start before it is added to `connectionList`; the accept
//!   loop yields once between the two, standing in for the thread start-up during which upstream's
//!   race happens. A probe that closes at once lets the reader exit (and run its no-op
//!   `removeConnection`) before the add, so the add leaves a dead entry forever;
//! * `connectionCount` is incremented in the constructor and decremented by the reader's exit,
//!   apart from the list, so the two drift apart;
//! * every 8 bytes read are an ack, unvalidated, and raise `push2SlaveMaxOffset` monotonically
//!   (a timestamp probe raises it to ~3.7e18).
//!
//! What is not: the 1 MiB read buffer each upstream connection allocates is accounted
//! (`RETAINED_PER_ENTRY`), not allocated, so the replay can show what the leaked entries retain
//! on the JVM heap without exhausting this process. No data is replicated: the writer only
//! waits to be stopped, as upstream's does for a peer that never reports.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
// The listener comes from the including module: tokio's here, turmoil's in tests/sim.rs, which
// runs this same file as the master of its 5.1.4 world.
use super::TcpListener;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Upstream's `READ_MAX_BUFFER_SIZE`: what each list entry retains.
pub(crate) const RETAINED_PER_ENTRY: u64 = 1 << 20;

struct Conn {
    id: u64,
    alive: AtomicBool,
    stop: Notify,
}

struct Shared {
    list: Mutex<Vec<Arc<Conn>>>,
    count: AtomicI64,
    push2slave_max: AtomicU64,
    tasks: AtomicI64,
}

/// What the emulated master holds, for the replay's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub(crate) struct Snapshot514 {
    /// `connectionList.size()`.
    pub(crate) list_len: usize,
    /// Entries whose threads have exited: the leak.
    pub(crate) dead_entries: usize,
    /// `connectionCount`.
    pub(crate) count: i64,
    /// Reader and writer tasks alive.
    pub(crate) tasks: i64,
    /// `push2SlaveMaxOffset`: the highest "ack" read from any peer.
    pub(crate) push2slave_max: u64,
    /// What the list's entries retain on upstream's heap (entries x 1 MiB).
    pub(crate) retained_bytes: u64,
}

/// The emulated 5.1.4 HA master.
pub(crate) struct HaMaster514 {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for HaMaster514 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaMaster514")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HaMaster514 {
    /// Binds and starts the accept loop; a reader that reads nothing for `housekeeping` exits
    /// (upstream's `haHousekeepingInterval`).
    pub(crate) async fn bind(
        listen: SocketAddr,
        housekeeping: std::time::Duration,
    ) -> io::Result<HaMaster514> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            list: Mutex::new(Vec::new()),
            count: AtomicI64::new(0),
            push2slave_max: AtomicU64::new(0),
            tasks: AtomicI64::new(0),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            shared.clone(),
            cancel.clone(),
            housekeeping,
        ));
        Ok(HaMaster514 {
            shared,
            local_addr,
            cancel,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current figures.
    pub(crate) fn snapshot(&self) -> Snapshot514 {
        let list = self.shared.list.lock().unwrap();
        let dead_entries = list
            .iter()
            .filter(|c| !c.alive.load(Ordering::Acquire))
            .count();
        Snapshot514 {
            list_len: list.len(),
            dead_entries,
            count: self.shared.count.load(Ordering::Acquire),
            tasks: self.shared.tasks.load(Ordering::Acquire),
            push2slave_max: self.shared.push2slave_max.load(Ordering::Acquire),
            retained_bytes: list.len() as u64 * RETAINED_PER_ENTRY,
        }
    }

    /// Stops accepting and tells every live connection to stop (`destroyConnections`).
    pub(crate) fn shutdown(&self) {
        self.cancel.cancel();
        for conn in self.shared.list.lock().unwrap().drain(..) {
            conn.stop.notify_one();
        }
    }
}

impl Drop for HaMaster514 {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    housekeeping: std::time::Duration,
) {
    let mut next_id = 0;
    loop {
        let (stream, _) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(_) => continue,
            },
        };
        next_id += 1;
        // createConnection: the constructor increments connectionCount.
        let conn = Arc::new(Conn {
            id: next_id,
            alive: AtomicBool::new(true),
            stop: Notify::new(),
        });
        shared.count.fetch_add(1, Ordering::AcqRel);
        // conn.start(): the reader and the writer run from here on.
        let (mut rd, _wr) = stream.into_split();
        let (reader_shared, reader_conn) = (shared.clone(), conn.clone());
        shared.tasks.fetch_add(2, Ordering::AcqRel);
        tokio::spawn(async move {
            let mut word = [0u8; 8];
            loop {
                tokio::select! {
                    biased;
                    _ = reader_conn.stop.notified() => break,
                    read = tokio::time::timeout(housekeeping, rd.read_exact(&mut word)) => match read {
                        // No validation: any 8 bytes are the slave's max offset.
                        Ok(Ok(_)) => { reader_shared.push2slave_max.fetch_max(u64::from_be_bytes(word), Ordering::AcqRel); }
                        Ok(Err(_)) | Err(_) => break,
                    },
                }
            }
            // ReadSocketService exit: SHUTDOWN, stop the writer, removeConnection, count--.
            reader_conn.alive.store(false, Ordering::Release);
            reader_conn.stop.notify_one();
            remove(&reader_shared, reader_conn.id);
            reader_shared.count.fetch_sub(1, Ordering::AcqRel);
            reader_shared.tasks.fetch_sub(1, Ordering::AcqRel);
        });
        let (writer_shared, writer_conn) = (shared.clone(), conn.clone());
        tokio::spawn(async move {
            while writer_conn.alive.load(Ordering::Acquire) {
                writer_conn.stop.notified().await;
            }
            remove(&writer_shared, writer_conn.id);
            writer_shared.tasks.fetch_sub(1, Ordering::AcqRel);
        });
        // The gap between start() and addConnection(): the threads are already running.
        tokio::task::yield_now().await;
        shared.list.lock().unwrap().push(conn);
    }
}

/// `removeConnection`: a no-op when the entry is not (yet) in the list.
fn remove(shared: &Shared, id: u64) {
    shared.list.lock().unwrap().retain(|c| c.id != id);
}
