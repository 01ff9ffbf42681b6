//! Shutdown as a type, after mini-redis: one [`ShutdownTrigger`] fires it, every task holds
//! a [`Shutdown`] and stops taking work when it fires; whoever started the tasks waits for
//! them to finish what they hold.

use tokio::sync::watch;

/// Fires the shutdown of everything holding a [`Shutdown`] made from it.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Tells a task when to stop taking new work. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A trigger and the first handle on it.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when the shutdown fires (at once if it has), or if the trigger is dropped.
    pub async fn fired(&mut self) {
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}
