//! Comparing a secret a caller presents (a bearer token) with the one in the
//! settings, in constant time. A leaf: the admin API, the metrics page and the
//! voice robot's outcome endpoint use it.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// Whether the request carries `Authorization: Bearer <secret>`. The
/// digests are compared, in constant time, so neither the secret's content
/// nor its length shows in the timing.
pub fn bearer_is(headers: &HeaderMap, secret: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(secret.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A page for machines (metrics, a call's outcome): the bearer token where
/// one is set, else only a caller on this machine.
pub fn token_or_loopback(headers: &HeaderMap, peer: std::net::IpAddr, token: &str) -> bool {
    if token.is_empty() {
        peer.is_loopback()
    } else {
        bearer_is(headers, token)
    }
}
