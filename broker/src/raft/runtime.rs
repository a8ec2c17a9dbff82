//! The async runtime openraft runs on: tokio, with a random-number source a simulation can
//! seed.
//!
//! Openraft draws every random number it uses (election timeouts, the phase of its tick)
//! from its runtime's `thread_rng`. [`SiltRuntime`] draws them from one process-wide stream:
//! seeded from the OS by default, or from [`seed`] so that a single-threaded simulation replays
//! exactly. Everything else is tokio's.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openraft::AsyncRuntime;
use openraft::OptionalSend;
use openraft::TokioRuntime;
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// The next seed handed out; advanced by every draw.
static STREAM: AtomicU64 = AtomicU64::new(0);
/// Whether [`STREAM`] was seeded (by [`seed`] or from the OS).
static SEEDED: AtomicBool = AtomicBool::new(false);
/// Whether [`seed`] was called (see [`simulated`]).
static SIMULATED: AtomicBool = AtomicBool::new(false);

/// Makes every later draw of openraft's randomness follow `seed`, for a replayable
/// simulation. Affects the whole process: simulations run one at a time.
pub fn seed(seed: u64) {
    STREAM.store(seed, Ordering::SeqCst);
    SEEDED.store(true, Ordering::SeqCst);
    SIMULATED.store(true, Ordering::SeqCst);
}

/// True once [`seed`] was called: this process runs a simulation, on simulated storage, where
/// file work runs in place on the one thread rather than on tokio's blocking pool (whose
/// threads would make the interleaving, and so the run, depend on the OS's scheduling).
pub fn simulated() -> bool {
    SIMULATED.load(Ordering::Relaxed)
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn next_seed() -> u64 {
    if !SEEDED.swap(true, Ordering::SeqCst) {
        // First draw without a simulation: start from the OS's randomness.
        let os = uuid::Uuid::new_v4().as_u64_pair().0;
        STREAM.store(os, Ordering::SeqCst);
    }
    mix(STREAM.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst))
}

/// Tokio, with a seedable random-number source (see the module docs).
#[derive(Debug)]
pub struct SiltRuntime {
    inner: TokioRuntime,
}

type Inner = TokioRuntime;

impl AsyncRuntime for SiltRuntime {
    type JoinError = <Inner as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Inner as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Inner as AsyncRuntime>::Sleep;
    type Instant = <Inner as AsyncRuntime>::Instant;
    type TimeoutError = <Inner as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Inner as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Inner::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Inner::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Inner::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Inner::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Inner::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Inner::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SmallRng::seed_from_u64(next_seed())
    }

    type Mpsc = <Inner as AsyncRuntime>::Mpsc;
    type Watch = <Inner as AsyncRuntime>::Watch;
    type Oneshot = <Inner as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Inner as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        SiltRuntime {
            inner: Inner::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    #[test]
    fn a_seed_replays_the_same_draws() {
        let draw = || -> Vec<u64> {
            (0..5)
                .map(|_| SiltRuntime::thread_rng().random_range(0..1_000_000))
                .collect()
        };
        seed(42);
        let first = draw();
        seed(42);
        assert_eq!(draw(), first);
        seed(43);
        assert_ne!(draw(), first);
    }
}
