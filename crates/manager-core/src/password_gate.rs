//! Bounded argon2 work: every password hash and check the server runs goes through one
//! [`PasswordGate`].
//!
//! An argon2id check takes ~19 MiB and tens of milliseconds of one core. Run without a
//! bound, a burst of sign-ins (they need no credentials) runs hundreds of them at once:
//! gigabytes of memory the allocator keeps afterwards. The gate lets at most one check
//! per core run, lets a short queue wait for a turn, and refuses the rest at once with
//! [`Error::Busy`] (a 503 with `Retry-After`). The checks run on the gate's own threads,
//! one per turn, rather than on tokio's blocking pool: the allocator keeps a freed
//! argon2 block per thread that ran one, and the blocking pool's threads come and go.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Requests that may wait for a turn, per running one; more are refused at once.
const WAITING_PER_PERMIT: usize = 8;
/// Longest a request waits for a turn before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// The process's argon2 work: at most `permits` at once, a bounded queue behind them.
#[derive(Debug)]
pub struct PasswordGate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A turn at the gate: argon2 work may run while it is held.
#[derive(Debug)]
pub struct Turn {
    permit: OwnedSemaphorePermit,
    jobs: mpsc::Sender<Job>,
}

impl PasswordGate {
    /// A gate running at most `permits` (at least one) checks at once, on as many
    /// threads of its own (they end when the gate is dropped).
    pub fn new(permits: usize) -> Self {
        let permits = permits.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..permits {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("picloud-passwords-{i}"))
                .spawn(move || loop {
                    let next = queue
                        .lock()
                        .map_err(drop)
                        .and_then(|q| q.recv().map_err(drop));
                    match next {
                        Ok(job) => job(),
                        Err(()) => return,
                    }
                })
                .expect("spawn a password thread");
        }
        PasswordGate {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            max_waiting: permits * WAITING_PER_PERMIT,
            jobs,
        }
    }

    /// A gate with one turn per core this process may use.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Waits for a turn: at once if one is free, else in the queue for at most
    /// `MAX_WAIT`. [`Error::Busy`] when the queue is full or the wait runs out.
    pub async fn admit(&self) -> Result<Turn> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(self.turn(permit));
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Busy);
        }
        let acquired = tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(permit)) => Ok(self.turn(permit)),
            _ => Err(Error::Busy),
        }
    }

    fn turn(&self, permit: OwnedSemaphorePermit) -> Turn {
        Turn {
            permit,
            jobs: self.jobs.clone(),
        }
    }

    /// Runs `work` (argon2 hashing or checking) in its turn; see [`PasswordGate::admit`].
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.admit().await?.run(work).await
    }
}

impl Turn {
    /// Runs `work` on one of the gate's threads, holding the turn until it is done (also
    /// when the request that asked for it is dropped meanwhile). A panic in `work` is
    /// passed on; work that cannot run because the gate is gone is
    /// [`Error::ShuttingDown`].
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (done, result) = oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            drop(permit);
            let _ = done.send(outcome);
        });
        self.jobs.send(job).map_err(|_| Error::ShuttingDown)?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(Error::ShuttingDown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_beyond_the_permits_and_the_queue_is_refused_at_once() {
        let gate = Arc::new(PasswordGate::new(1));
        let running = gate.admit().await.unwrap();
        let queued: Vec<_> = (0..WAITING_PER_PERMIT)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.run(|| 7).await })
            })
            .collect();
        while gate.waiting.load(Ordering::Acquire) < WAITING_PER_PERMIT {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(gate.admit().await, Err(Error::Busy)),
            "the queue is full"
        );
        drop(running);
        for task in queued {
            assert_eq!(task.await.unwrap().unwrap(), 7, "the queue gets its turns");
        }
        assert_eq!(gate.run(|| 8).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_limit_is_refused() {
        let gate = PasswordGate::new(1);
        let _running = gate.admit().await.unwrap();
        assert!(matches!(gate.admit().await, Err(Error::Busy)));
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }
}
