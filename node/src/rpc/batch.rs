//! Batches of replica requests, on the serving side: a
//! [`PeerRequest::Batch`](crate::rpc::peer::PeerRequest::Batch) is decoded
//! request by request, served at once, and answered within the size the
//! asking node reads. (The sending side is in [`crate::rpc::quic`].)

use crate::rpc::peer::{
    max_peer_frame_bytes, PeerError, PeerResponse, ReplicaRequest, ReplicaResponse, MAX_BATCH,
};
use std::future::Future;

/// Serves the encoded replica requests `bodies` with `serve`, all at once,
/// and answers them in order within what a node with client frames of
/// `max_frame_bytes` reads. A batch of more than [`MAX_BATCH`] requests is
/// refused whole; an undecodable request gets its own error.
pub async fn serve<F, Fut>(bodies: &[Vec<u8>], max_frame_bytes: usize, serve: F) -> PeerResponse
where
    F: Fn(ReplicaRequest) -> Fut,
    Fut: Future<Output = Result<ReplicaResponse, PeerError>>,
{
    if bodies.len() > MAX_BATCH {
        return PeerError::BatchTooLarge {
            requests: bodies.len() as u64,
            max: MAX_BATCH as u64,
        }
        .into();
    }
    let answers = bodies.iter().map(|body| {
        let served = postcard::from_bytes::<ReplicaRequest>(body)
            .map(&serve)
            .map_err(|e| PeerError::Malformed(e.to_string()));
        async move {
            match served {
                Ok(answer) => PeerResponse::from(answer.await),
                Err(e) => PeerResponse::Error(e),
            }
        }
    });
    answer(
        join_all(answers.collect()).await,
        max_peer_frame_bytes(max_frame_bytes),
    )
}

/// The answer to a batch: `answers` encoded one by one, in order, within
/// `max` bytes in all (what the asking node reads). An answer past the
/// budget becomes [`PeerError::AnswerTooLarge`], and the asking node sends
/// its request again on its own. (Every answer but a read's is tiny.)
pub fn answer(answers: Vec<PeerResponse>, max: usize) -> PeerResponse {
    let alone = kvorum_client::bytes::encode(&PeerResponse::Error(PeerError::AnswerTooLarge));
    // The envelope, and per answer its length prefix and room to become
    // AnswerTooLarge.
    let overhead = 16 + answers.len() * (alone.len() + 10);
    let mut budget = max.saturating_sub(overhead);
    PeerResponse::Batch(
        answers
            .into_iter()
            .map(|a| {
                let bytes = kvorum_client::bytes::encode(&a);
                if bytes.len() <= budget {
                    budget -= bytes.len();
                    bytes
                } else {
                    alone.clone()
                }
            })
            .collect(),
    )
}

/// Runs `futures` concurrently on this task and returns their outputs in
/// order (each is polled again on every wake-up of the task: for the small
/// batches of replica requests).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::peer::PEER_PROTOCOL_VERSION;

    fn decoded(answer: PeerResponse) -> Vec<PeerResponse> {
        let PeerResponse::Batch(items) = answer else {
            panic!("a batch's answer is a batch");
        };
        items
            .iter()
            .map(|b| postcard::from_bytes(b).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_answer_too_large_sends_its_biggest_parts_alone() {
        let big = PeerResponse::Error(PeerError::Storage("x".repeat(10_000)));
        let stored = || PeerResponse::Replica(ReplicaResponse::Stored);
        let answers = vec![stored(), big.clone(), big.clone(), stored()];
        // Room for one big answer, not two.
        let answer = answer(answers.clone(), 15_000);
        let frame = kvorum_client::proto::encode_frame(PEER_PROTOCOL_VERSION, &answer);
        assert!(frame.len() <= 15_000, "{}", frame.len());
        let items = decoded(answer);
        assert_eq!(items.len(), 4);
        assert!(matches!(
            items[0],
            PeerResponse::Replica(ReplicaResponse::Stored)
        ));
        assert!(
            matches!(&items[1], PeerResponse::Error(PeerError::Storage(e)) if e.len() == 10_000)
        );
        assert!(matches!(
            &items[2],
            PeerResponse::Error(PeerError::AnswerTooLarge)
        ));
        assert!(matches!(
            items[3],
            PeerResponse::Replica(ReplicaResponse::Stored)
        ));
        // With room for everything, everything is kept, in order.
        let items = decoded(super::answer(answers, 1 << 20));
        assert!(
            matches!(&items[2], PeerResponse::Error(PeerError::Storage(e)) if e.len() == 10_000)
        );
        assert!(matches!(
            items[3],
            PeerResponse::Replica(ReplicaResponse::Stored)
        ));
    }

    #[tokio::test]
    async fn a_batch_is_served_in_order_and_a_bad_request_fails_alone() {
        let read =
            |k: &[u8]| kvorum_client::bytes::encode(&ReplicaRequest::Read { key: k.to_vec() });
        let bodies = vec![read(b"a"), b"\xff\xff".to_vec(), read(b"b")];
        let answer = serve(&bodies, 1 << 20, |req| async move {
            match req {
                ReplicaRequest::Read { key } if key == b"a" => Ok(ReplicaResponse::State(None)),
                _ => Err(PeerError::Refused("not a".into())),
            }
        })
        .await;
        let items = decoded(answer);
        assert!(matches!(
            items[0],
            PeerResponse::Replica(ReplicaResponse::State(None))
        ));
        assert!(matches!(
            items[1],
            PeerResponse::Error(PeerError::Malformed(_))
        ));
        assert!(matches!(
            items[2],
            PeerResponse::Error(PeerError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn a_batch_over_the_bound_is_refused_whole() {
        let bodies = vec![Vec::new(); MAX_BATCH + 1];
        let answer = serve(&bodies, 1 << 20, |_| async { Ok(ReplicaResponse::Stored) }).await;
        assert!(matches!(
            answer,
            PeerResponse::Error(PeerError::BatchTooLarge { requests, .. }) if requests == MAX_BATCH as u64 + 1
        ));
    }
}
