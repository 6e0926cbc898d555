//! Helpers for the crate's unit tests.

/// Runs `hold` on another thread and panics while what it returned (a lock
/// guard) is still held: a poisoning lock would then refuse, or make its
/// callers skip, every later use of the data it guards.
pub(crate) fn panic_holding<G>(hold: impl FnOnce() -> G + Send) {
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _guard = hold();
                panic!("a deliberate panic while holding a lock");
            })
            .join()
    });
    assert!(outcome.is_err(), "the holding thread panicked");
}
