//! CPU slots: at most one run per worker executes script code at once, but a run that
//! waits on PiCloud (a publish's commit, a token, an outbound request) gives its slot to
//! another run for the wait. The executor keeps more threads than slots, so handlers that
//! publish overlap their commits (which then share group commits) instead of each
//! holding a worker idle while it waits.
//!
//! Only a run holding little memory ([`MAX_WAITING_MEMORY`]) gives its slot up: the
//! memory of waiting runs stays bounded by threads × that, on top of slots × the
//! per-run limit.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

/// Most bytes a run may hold and still give up its slot while it waits.
pub const MAX_WAITING_MEMORY: i64 = 4 * 1024 * 1024;

/// A fixed number of slots, taken and given back by the executor's threads.
#[derive(Debug)]
pub(crate) struct CpuSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

thread_local! {
    /// The slots of this thread's executor, while this thread holds one of them.
    static HELD: RefCell<Option<Arc<CpuSlots>>> = const { RefCell::new(None) };
}

impl CpuSlots {
    /// `slots` slots, all free.
    pub(crate) fn new(slots: usize) -> Arc<CpuSlots> {
        Arc::new(CpuSlots {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        })
    }

    fn take(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    fn give_back(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }

    /// Runs `f` on this thread holding a slot, given back when `f` returns or panics.
    pub(crate) fn holding<T>(self: &Arc<Self>, f: impl FnOnce() -> T) -> T {
        self.take();
        HELD.with(|held| *held.borrow_mut() = Some(self.clone()));
        let _release = Release(self.clone());
        f()
    }
}

/// Gives the slot back and forgets it, even when the run panics.
struct Release(Arc<CpuSlots>);

impl Drop for Release {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().take());
        self.0.give_back();
    }
}

/// Runs `wait` (a wait on PiCloud, not script code) without this thread's slot when
/// the run holds at most [`MAX_WAITING_MEMORY`] (`run_memory`), then takes a slot again.
/// Off an executor thread, or with more memory held, `wait` simply runs.
pub(crate) fn waiting<T>(run_memory: i64, wait: impl FnOnce() -> T) -> T {
    let slots = HELD.with(|held| held.borrow().clone());
    let Some(slots) = slots.filter(|_| run_memory <= MAX_WAITING_MEMORY) else {
        return wait();
    };
    slots.give_back();
    // Take a slot again even if `wait` panics: `holding` gives one back on the way out.
    struct Retake<'a>(&'a CpuSlots);
    impl Drop for Retake<'_> {
        fn drop(&mut self) {
            self.0.take();
        }
    }
    let _retake = Retake(&slots);
    wait()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    /// Four threads on two slots: never more than two run at once outside a wait, and
    /// all four are inside `waiting` together (their waits overlap).
    #[test]
    fn waits_overlap_but_running_is_bounded_by_the_slots() {
        let slots = CpuSlots::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let all_waiting = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (slots, running, most, all_waiting) = (
                    slots.clone(),
                    running.clone(),
                    most.clone(),
                    all_waiting.clone(),
                );
                std::thread::spawn(move || {
                    slots.holding(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        running.fetch_sub(1, Ordering::SeqCst);
                        // Without giving slots up in the wait, only two threads could
                        // reach the barrier and it would never open.
                        waiting(0, || {
                            all_waiting.wait();
                        });
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(*slots.free.lock().unwrap(), 2, "every slot is given back");
    }

    /// A run holding more than the limit keeps its slot while it waits.
    #[test]
    fn a_run_holding_much_memory_keeps_its_slot() {
        let slots = CpuSlots::new(1);
        slots.holding(|| {
            waiting(MAX_WAITING_MEMORY + 1, || {
                assert_eq!(*slots.free.lock().unwrap(), 0);
            });
            waiting(0, || {
                assert_eq!(*slots.free.lock().unwrap(), 1);
            });
        });
        assert_eq!(*slots.free.lock().unwrap(), 1);
    }
}
