//! L4: the tokio driver, the only module that names tokio.
//!
//! For now it provides the tokio implementation of the lifecycle layer's [`Spawn`]; the remoting
//! listener and the HA master and slave build on it. It holds no protocol decisions: those live
//! in `core`, and table changes go through `lifecycle` handles.

use crate::lifecycle::{BoxTask, Spawn, TaskHandle};

/// Spawns lifecycle tasks on the current tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioSpawner {
    handle: tokio::runtime::Handle,
}

impl TokioSpawner {
    /// Spawns onto `handle`'s runtime.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        TokioSpawner { handle }
    }

    /// Spawns onto the runtime this is called from. Panics outside a runtime, like `tokio::spawn`.
    pub fn current() -> Self {
        Self::new(tokio::runtime::Handle::current())
    }
}

impl Spawn for TokioSpawner {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        Box::new(self.handle.spawn(task))
    }
}

impl TaskHandle for tokio::task::JoinHandle<()> {
    fn abort(&self) {
        tokio::task::JoinHandle::abort(self);
    }

    fn is_finished(&self) -> bool {
        tokio::task::JoinHandle::is_finished(self)
    }
}
