//! Request collapsing: concurrent misses for one key make one origin fetch.

use std::time::Duration;

use anyhow::Result;

use crate::harness::{reply, Origin, TestNode};

async fn slow_origin(cache_control: &'static str) -> Result<Origin> {
    Origin::start(move |_| async move {
        // Slow enough that every concurrent request arrives while the first is in flight.
        tokio::time::sleep(Duration::from_millis(400)).await;
        reply(200, &[("cache-control", cache_control)], "shared body")
    })
    .await
}

async fn node_for(origin: &Origin) -> Result<TestNode> {
    TestNode::in_front_of(origin, "").await
}

async fn fire(node: &TestNode, n: usize) -> Result<Vec<(u16, String, String)>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = node.url("/same");
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        tasks.push(tokio::spawn(async move {
            let response = client.get(url.parse()?).await?;
            let status = response.status().as_u16();
            let x_cache = response
                .headers()
                .get("x-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok((status, x_cache, String::from_utf8_lossy(&body).into_owned()))
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await??);
    }
    Ok(results)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_share_one_fetch() -> Result<()> {
    let origin = slow_origin("max-age=60").await?;
    let node = node_for(&origin).await?;
    let results = fire(&node, 10).await?;
    assert_eq!(origin.count(), 1, "ten concurrent misses, one origin fetch");
    assert!(
        results
            .iter()
            .all(|(s, _, b)| *s == 200 && b == "shared body"),
        "{results:?}"
    );
    let misses = results.iter().filter(|(_, x, _)| x == "Miss").count();
    assert_eq!(misses, 1, "only the leader is a miss: {results:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn uncacheable_response_is_forwarded_for_each_waiter() -> Result<()> {
    let origin = slow_origin("private").await?;
    let node = node_for(&origin).await?;
    let results = fire(&node, 5).await?;
    assert!(
        results
            .iter()
            .all(|(s, x, b)| *s == 200 && x == "Miss" && b == "shared body"),
        "{results:?}"
    );
    assert_eq!(
        origin.count(),
        5,
        "a private response is never shared: each waiter asks the origin"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncacheable_key_is_not_queued_behind_a_leader() -> Result<()> {
    // The origin counts how many requests it holds at once.
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let origin = Origin::start(move |_| {
        let (now, peak) = (now.clone(), peak.clone());
        async move {
            use std::sync::atomic::Ordering;
            let held = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(held, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            reply(200, &[("cache-control", "private")], "for one viewer")
        }
    })
    .await?;
    let node = node_for(&origin).await?;
    // The first answer shows the key is uncacheable; the next five go to the origin together
    // instead of four of them waiting for a leader whose answer they cannot use.
    assert_eq!(fire(&node, 1).await?[0].0, 200);
    most.store(0, std::sync::atomic::Ordering::SeqCst);
    let results = fire(&node, 5).await?;
    assert!(results.iter().all(|(s, _, _)| *s == 200), "{results:?}");
    assert_eq!(origin.count(), 6);
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 5);
    Ok(())
}
