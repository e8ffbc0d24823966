//! The one place that names the runtime's network, time and filesystem types.
//!
//! `src/net/**` and `src/store/**` take their sockets, timers and files from here, so the same
//! driver and store run on tokio and std in production and inside the deterministic simulation of
//! `tests/sim.rs` under feature `sim`, where the sockets are turmoil's simulated TCP and the files
//! live in turmoil's per-host simulated filesystem (which a simulated crash can roll back to its
//! last sync). It is the IO counterpart of [`crate::sync`], and like it adds no behaviour: every
//! item is a re-export or a thin call that has the same meaning on both sides.
//!
//! The store's Linux fast paths (`fallocate`, `pwritev` on the raw descriptor) are compiled only
//! with `all(target_os = "linux", not(feature = "sim"))`: simulated files have no descriptor, so
//! the simulation runs the portable paths other targets run.
//!
//! Time is tokio's in both arms: turmoil runs each simulated host on a tokio runtime whose paused
//! clock it advances, so `tokio::time` already is the simulation's clock.

/// Files: `std::fs` in production, turmoil's simulated per-host filesystem under `sim`.
pub(crate) mod fs {
    #[cfg(not(feature = "sim"))]
    pub(crate) use std::fs::{
        File, OpenOptions, create_dir_all, read_dir, read_to_string, remove_file, rename,
    };
    #[cfg(feature = "sim")]
    pub(crate) use turmoil::fs::shim::std::fs::{
        File, OpenOptions, create_dir_all, read_dir, read_to_string, remove_file, rename,
    };

    /// Whether `path` exists (an error reading it counts as "exists", so nothing is overwritten).
    pub(crate) fn exists(path: &std::path::Path) -> bool {
        #[cfg(not(feature = "sim"))]
        return std::fs::exists(path).unwrap_or(true);
        #[cfg(feature = "sim")]
        return turmoil::fs::shim::std::fs::exists(path);
    }

    /// Takes an exclusive advisory lock (`flock`) on `file` without waiting: `Ok(false)` if
    /// another open file description holds it. It is released when the file is closed, so a
    /// killed holder never leaves a stale lock.
    #[cfg(not(feature = "sim"))]
    pub(crate) fn try_lock(file: &File) -> std::io::Result<bool> {
        use rustix::fs::{FlockOperation, flock};
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The simulated filesystem has no locks; each simulated host runs one store per directory.
    #[cfg(feature = "sim")]
    pub(crate) fn try_lock(_: &File) -> std::io::Result<bool> {
        Ok(true)
    }

    /// Whether a store syncs what it holds when dropped. A simulated crash (turmoil's
    /// `Sim::crash`) drops the host's objects before it discards unsynced writes, which a real
    /// crash never does; syncing there would make every crash lose nothing. So the simulation
    /// keeps only explicit syncs, as a power cut would.
    pub(crate) const SYNC_ON_DROP: bool = cfg!(not(feature = "sim"));

    /// Makes the directory entries created or removed in `dir` durable.
    #[cfg(not(feature = "sim"))]
    pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// See the production arm.
    #[cfg(feature = "sim")]
    pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
        turmoil::fs::shim::std::fs::sync_dir(dir)
    }
}

/// Background work off the caller's thread: an OS thread in production; under `sim` the work runs
/// in place, because a simulated host's filesystem belongs to the host's thread.
pub(crate) mod thread {
    /// A started piece of background work.
    #[derive(Debug)]
    pub(crate) struct Handle(#[cfg(not(feature = "sim"))] std::thread::JoinHandle<()>);

    /// Runs `work` on a new thread named `name` (in place under `sim`).
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Handle> {
        #[cfg(not(feature = "sim"))]
        return std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(work)
            .map(Handle);
        #[cfg(feature = "sim")]
        {
            let _ = name;
            work();
            Ok(Handle())
        }
    }

    impl Handle {
        /// The work is done.
        pub(crate) fn is_finished(&self) -> bool {
            #[cfg(not(feature = "sim"))]
            return self.0.is_finished();
            #[cfg(feature = "sim")]
            true
        }

        /// Waits for the work (a panic in it is not propagated).
        pub(crate) fn join(self) {
            #[cfg(not(feature = "sim"))]
            let _ = self.0.join();
        }
    }
}

/// TCP: tokio's in production, turmoil's simulated network under `sim`.
#[cfg(feature = "net")]
pub(crate) mod net {
    #[cfg(not(feature = "sim"))]
    pub(crate) use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    #[cfg(not(feature = "sim"))]
    pub(crate) use tokio::net::{TcpListener, TcpStream};
    #[cfg(feature = "sim")]
    pub(crate) use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    #[cfg(feature = "sim")]
    pub(crate) use turmoil::net::{TcpListener, TcpStream};

    /// Waits until the read half has bytes (or EOF or an error) to read, then reads what is there
    /// into `buf`'s spare capacity without waiting again; `WouldBlock` if another reader took
    /// them. Lets a reader allocate its buffer only once bytes are waiting.
    #[cfg(not(feature = "sim"))]
    pub(crate) async fn readable(rd: &mut OwnedReadHalf) -> std::io::Result<()> {
        rd.as_ref().readable().await
    }

    /// See [`readable`].
    #[cfg(not(feature = "sim"))]
    pub(crate) fn try_read_buf(
        rd: &mut OwnedReadHalf,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        rd.as_ref().try_read_buf(buf)
    }

    /// See the production arm: a one-byte peek waits for the same condition.
    #[cfg(feature = "sim")]
    pub(crate) async fn readable(rd: &mut OwnedReadHalf) -> std::io::Result<()> {
        rd.peek(&mut [0u8; 1]).await.map(drop)
    }

    /// See the production arm: one poll of a read, which the simulated socket completes at once
    /// when bytes are buffered.
    #[cfg(feature = "sim")]
    pub(crate) fn try_read_buf(
        rd: &mut OwnedReadHalf,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        use tokio::io::AsyncReadExt;
        let read = std::pin::pin!(rd.read_buf(buf));
        match read.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Timers: tokio's in both arms (see the module docs).
#[cfg(feature = "net")]
pub(crate) mod time {
    pub(crate) use tokio::time::{
        Instant, MissedTickBehavior, interval, sleep, sleep_until, timeout,
    };
}
