//! The runtime SSE streams served on the socket run on, apart from the one serving the
//! API. A publish to ten thousand subscribers wakes ten thousand stream tasks at once;
//! on their own threads, the operating system shares the CPU between them and the API,
//! so publish acknowledgements, token requests and everything else keep answering
//! promptly while a large fan-out is under way (and the fan-out itself is written in
//! bigger batches when it falls behind).

use std::future::Future;

use tokio::runtime::{Handle, Runtime};

/// A multi-threaded runtime for streams, shut down when dropped.
pub struct StreamRuntime {
    runtime: Option<Runtime>,
}

impl StreamRuntime {
    /// A runtime with `threads` workers named `picloud-realtime`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("picloud-realtime")
            .enable_all()
            .build()?;
        Ok(StreamRuntime {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` on the stream runtime.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle().spawn(future);
    }

    fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the stream runtime lives until dropped")
            .handle()
    }
}

impl Drop for StreamRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async contexts forbid; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
