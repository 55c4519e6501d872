//! One way to take a standard lock: a poisoned lock is taken anyway.
//!
//! A lock is poisoned when a thread panicked while holding it. Every
//! critical section of the node leaves its data consistent at each step (a
//! map insert, a counter bump), so the data behind a poisoned lock is still
//! valid; refusing it would turn one panic into a node that fails every
//! later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Takes a [`Mutex`] or a [`RwLock`], recovering from poisoning.
///
/// ```
/// use kvorum_node::util::LockExt;
/// let m = std::sync::Mutex::new(1);
/// *m.locked() += 1;
/// assert_eq!(*m.locked(), 2);
/// ```
pub trait LockExt<T: ?Sized> {
    /// The guard of a mutex (or the write guard of a `RwLock`).
    type Guard<'a>
    where
        Self: 'a;
    /// Locks, even if a panicking thread poisoned the lock.
    fn locked(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    type Guard<'a>
        = MutexGuard<'a, T>
    where
        Self: 'a;
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized> LockExt<T> for RwLock<T> {
    type Guard<'a>
        = RwLockWriteGuard<'a, T>
    where
        Self: 'a;
    fn locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shared access to a [`RwLock`], recovering from poisoning.
///
/// ```
/// use kvorum_node::util::lock::ReadExt;
/// let l = std::sync::RwLock::new(3);
/// assert_eq!(*l.read_locked(), 3);
/// ```
pub trait ReadExt<T: ?Sized> {
    /// Read-locks, even if a panicking thread poisoned the lock.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
}

impl<T: ?Sized> ReadExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = std::sync::Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 5);
    }
}
