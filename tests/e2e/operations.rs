//! Operations: graceful shutdown finishes in-flight requests and then stops accepting.

use std::time::Duration;

use anyhow::Result;
use http_body_util::Full;

use crate::harness::{reply, Origin, TestNode};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_in_flight_requests() -> Result<()> {
    let origin = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reply(200, &[], "finished")
    })
    .await?;
    let TestNode { node, .. } = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    let addr = node.addr();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            let response = client.get(format!("http://{addr}/slow").parse()?).await?;
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok(body)
        }
    });
    // Shut down once the origin has the request, i.e. the request is in flight.
    while origin.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
    assert_eq!(
        &in_flight.await??[..],
        b"finished",
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    Ok(())
}
