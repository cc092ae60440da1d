//! The dashboard's token (`--dashboard-token-file`): every path but
//! `/health` asks for it, as `Authorization: Bearer TOKEN` (Prometheus,
//! curl) or as the `eddy_token` cookie; `?token=TOKEN` on any page sets that
//! cookie (HttpOnly, SameSite=Strict) so that a browser opened once with the
//! link keeps its page and event stream. Without a token configured every
//! request passes. Tokens are compared in constant time.

use super::Shared;
use crate::security::token;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const COOKIE: &str = "eddy_token";

/// Lets the request through when it carries the token; 401 otherwise.
pub async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(expected) = &shared.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let from_query = query_token(request.uri().query().unwrap_or(""));
    let presented = bearer(&request)
        .or_else(|| cookie(&request))
        .or(from_query.clone());
    let valid = presented.is_some_and(|t| token::matches(t.as_bytes(), expected));
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "401: this dashboard asks for its token (Authorization: Bearer, or ?token=)\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(token) = from_query {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn cookie(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "token").then(|| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_in_a_query() {
        assert_eq!(query_token("a=1&token=xyz"), Some("xyz".into()));
        assert_eq!(query_token("tokens=xyz"), None);
        assert_eq!(query_token(""), None);
    }
}
