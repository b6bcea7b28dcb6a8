//! Background work that shares the cores with request threads.
//!
//! `nectar dev` answers on one thread per core; its served-log flush (compressing the
//! answers' events, mapping them for the recent histories) runs on another thread, in bursts.
//! A request whose thread wakes on the core a burst holds waits for the scheduler to switch,
//! which can take the rest of the burst: a 1,000-event flush held a core for ≈ 2 ms and was
//! the recommend route's p99 at 4 connections (issue 16). Work run under [`run`] is cut into
//! slices of [`SLICE`] events and [`pause`]s between them, so a waiting thread runs within
//! about one slice (≈ 0.1 ms). Request handlers never pause: outside [`run`], [`pause`] does
//! nothing and [`slice`] is the whole batch.

use std::future::Future;

tokio::task_local! {
    static BACKGROUND: ();
}

/// Events per slice of background work: 64 served events compress in ≈ 0.07 ms here, and a
/// 64-line deflate chunk is within 5 % of the size of a 500-line one (a 32 KiB window holds
/// about 55 served events).
pub const SLICE: usize = 64;

/// Runs `work` as background work: [`pause`] yields the core and [`slice`] cuts batches.
pub async fn run<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// Whether the caller runs under [`run`].
pub fn active() -> bool {
    BACKGROUND.try_with(|_| ()).is_ok()
}

/// Gives the core back to any thread waiting for it (`sched_yield`), when called from
/// background work; otherwise nothing.
pub fn pause() {
    if active() {
        std::thread::yield_now();
    }
}

/// Call with each item's index in a loop over a batch: [`pause`]s before every [`SLICE`]th
/// item after the first slice.
pub fn pause_at(index: usize) {
    if index > 0 && index.is_multiple_of(SLICE) {
        pause();
    }
}

/// How many items of a batch to process before the next [`pause`]: [`SLICE`] in background
/// work, else all of them (at least 1, for `chunks`).
pub fn slice(len: usize) -> usize {
    if active() {
        SLICE
    } else {
        len.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_work_run_in_the_background_is_sliced() {
        // GIVEN a request's work and a background task's work
        // WHEN each asks how to cut a batch of 500
        // THEN the request keeps it whole, the background work cuts it into slices
        assert!(!active());
        assert_eq!(slice(500), 500);
        assert_eq!(slice(0), 1);
        let inside = run(async {
            tokio::task::yield_now().await;
            (active(), slice(500))
        })
        .await;
        assert_eq!(inside, (true, SLICE));
        // AND the mark does not leak to what runs after it
        assert!(!active());
    }
}
