//! The coordinator's end of a session's outbound stream: a bounded queue
//! that tonic drains as fast as the agent's HTTP/2 window allows, watched so
//! that an agent that stops reading is found. Whenever something waits in
//! the queue, the agent must take at least one message off it per
//! `deadline`; if it does not, the session is closed, and what the agent had
//! not accepted is sent again when it reconnects (the inventory redelivers by
//! sequence). Sending never blocks the session longer than the deadline.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The stream is gone (the agent or tonic dropped it).
    Closed,
    /// Something has waited for the whole deadline and the agent took nothing.
    Stalled,
}

#[derive(Debug)]
pub struct Outbound<T> {
    tx: mpsc::Sender<T>,
    deadline: Duration,
    sent: u64,
    /// Armed while something waits: when to look again, and how many
    /// messages the agent had taken then.
    watch: Option<(Pin<Box<Sleep>>, u64)>,
}

impl<T> Outbound<T> {
    pub fn new(tx: mpsc::Sender<T>, deadline: Duration) -> Self {
        Self {
            tx,
            deadline,
            sent: 0,
            watch: None,
        }
    }

    /// Messages the agent's stream has taken off the queue.
    fn taken(&self) -> u64 {
        let waiting = self.tx.max_capacity() - self.tx.capacity();
        self.sent - waiting as u64
    }

    fn arm(&mut self) {
        let at = Instant::now() + self.deadline;
        self.watch = Some((Box::pin(tokio::time::sleep_until(at)), self.taken()));
    }

    /// Queues `item`; `Err` when the stream is gone or stayed full for the
    /// whole deadline.
    pub async fn send(&mut self, item: T) -> Result<(), Trouble> {
        match tokio::time::timeout(self.deadline, self.tx.send(item)).await {
            Ok(Ok(())) => {
                self.sent += 1;
                if self.watch.is_none() {
                    self.arm();
                }
                Ok(())
            }
            Ok(Err(_)) => Err(Trouble::Closed),
            Err(_) => Err(Trouble::Stalled),
        }
    }

    /// A last message, if there is room for it (never waits).
    pub fn try_send(&self, item: T) {
        let _ = self.tx.try_send(item);
    }

    /// Resolves when the stream closes or the agent stalls; cancel-safe.
    pub async fn trouble(&mut self) -> Trouble {
        loop {
            let tx = &self.tx;
            let Some((sleep, _)) = &mut self.watch else {
                tx.closed().await;
                return Trouble::Closed;
            };
            tokio::select! {
                () = tx.closed() => return Trouble::Closed,
                () = sleep.as_mut() => {}
            }
            let armed_at = self.watch.as_ref().map_or(0, |(_, taken)| *taken);
            if self.tx.capacity() == self.tx.max_capacity() {
                self.watch = None; // all taken
            } else if self.taken() > armed_at {
                self.arm(); // slow, but reading
            } else {
                return Trouble::Stalled;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn an_agent_that_reads_nothing_is_found_stalled() {
        let (tx, _rx) = mpsc::channel(4);
        let mut outbound = Outbound::new(tx, DEADLINE);
        outbound.send(1).await.expect("queued");
        let started = Instant::now();
        assert_eq!(outbound.trouble().await, Trouble::Stalled);
        assert!(started.elapsed() >= DEADLINE);
        // A full queue does not block a send past the deadline either.
        for n in 0..3 {
            outbound.send(n).await.expect("room");
        }
        assert_eq!(outbound.send(9).await, Err(Trouble::Stalled));
    }

    #[tokio::test]
    async fn an_agent_that_reads_is_never_stalled() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut outbound = Outbound::new(tx, DEADLINE);
        outbound.send(1).await.expect("queued");
        assert_eq!(rx.recv().await, Some(1));
        // Nothing waits: no deadline runs; only closing ends the watch.
        let watched = tokio::time::timeout(DEADLINE * 3, outbound.trouble()).await;
        assert!(watched.is_err(), "no trouble while the queue is empty");
        // Slow but steady: one taken per deadline is enough.
        for n in 0..3 {
            outbound.send(n).await.expect("queued");
        }
        let reader = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(DEADLINE / 2).await;
                rx.recv().await;
            }
            rx
        });
        let watched = tokio::time::timeout(DEADLINE * 4, outbound.trouble()).await;
        assert!(watched.is_err(), "{watched:?}");
        drop(reader.await.expect("reader"));
        assert_eq!(outbound.trouble().await, Trouble::Closed);
    }
}
