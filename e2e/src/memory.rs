//! Memory per flow in Redis: `MEMORY USAGE` of a flow's key after a start
//! and 9 steps, for each single-node stack in turn on the emptied private
//! server.

use std::net::SocketAddr;

use axum::http::StatusCode;
use hyper::Method;

use crate::{
    load::{HttpClient, send},
    stack::Stack,
};

/// Steps taken before the flow is weighed: a flow's record after a few
/// steps, with its counter grown past one digit.
const STEPS: usize = 9;

/// Bytes Redis uses for one flow of `stack`, answered by `MEMORY USAGE`
/// (key, value and overhead). Empties the private server first and after.
pub(crate) async fn memory_per_flow(
    client: &HttpClient,
    admin: &mut redis::Connection,
    addr: SocketAddr,
    stack: Stack,
) -> u64 {
    redis::cmd("FLUSHDB").exec(admin).unwrap();
    let (_, cookie) = send(client, Method::POST, &format!("http://{addr}/start"), None).await;
    let cookie = cookie.expect("starting a flow sets a cookie");
    for _ in 0..STEPS {
        let (status, _) = send(
            client,
            Method::POST,
            &format!("http://{addr}/step"),
            Some(&cookie),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{} /step", stack.name());
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(admin).unwrap();
    assert_eq!(
        keys.len(),
        1,
        "{}: one flow, one key: {keys:?}",
        stack.name()
    );
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&keys[0])
        .query(admin)
        .unwrap();
    redis::cmd("FLUSHDB").exec(admin).unwrap();
    bytes
}
