//! Where a node runs its long-lived work: the storage writer, the periodic
//! sync and the anti-entropy tree stepper.

/// How a node runs its storage writer, its periodic sync and its
/// anti-entropy tree stepper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// On OS threads of their own (a real node: a blocking fsync must not
    /// hold a runtime thread).
    #[default]
    Threads,
    /// As tasks of the current runtime (the deterministic simulator: one
    /// thread, virtual time, an engine that never blocks).
    Tasks,
}

impl Workers {
    /// Runs `f`, which may block (an engine's sync or scan): on the
    /// runtime's blocking pool with [`Workers::Threads`], inline with
    /// [`Workers::Tasks`] (the simulator's engine never blocks, and a
    /// thread would make its runs differ).
    pub async fn run_blocking<T, F>(self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self {
            Workers::Threads => tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| e.to_string()),
            Workers::Tasks => Ok(f()),
        }
    }
}
