//! Running several futures of one task at once.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs `futures` concurrently on the calling task and returns their
/// outputs in order (each future is polled until it is done; on a wake,
/// the ones still pending are polled again).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (future, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The first future waits for what the last one sends: run one after
    /// the other, they would never end.
    #[tokio::test]
    async fn outputs_come_in_order_and_the_futures_run_at_once() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut rx = Some(rx);
        let mut tx = Some(tx);
        let futures: Vec<_> = (0..3u32)
            .map(|i| {
                let rx = if i == 0 { rx.take() } else { None };
                let tx = if i == 2 { tx.take() } else { None };
                async move {
                    if let Some(rx) = rx {
                        return rx.await.unwrap_or(0) + 100;
                    }
                    if let Some(tx) = tx {
                        let _ = tx.send(7);
                    }
                    i
                }
            })
            .collect();
        let out = tokio::time::timeout(Duration::from_secs(5), join_all(futures))
            .await
            .expect("the futures ran at once");
        assert_eq!(out, [107, 1, 2]);
    }
}
