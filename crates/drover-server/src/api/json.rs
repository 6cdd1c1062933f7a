//! A JSON body extractor whose errors name the offending field.

use super::body_deadline::timed_out;
use super::error::ApiError;
use super::json_depth::{MAX_JSON_DEPTH, too_deep_at};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Like `axum::Json`, but strict, and a malformed body gets a 400 naming the field
/// path (`tasks[2].resources.cpu_milli`) and saying what was expected; an oversize one
/// a 413, both as JSON. The body is parsed into a [`drover_types::Input`] tree
/// (serde_json's recursion limit stays on, so deeply nested input is refused rather
/// than blowing the stack), then read by the strict deserializer of
/// [`drover_types::input`]: objects must be objects, unknown and repeated fields are
/// errors, scalars are never converted.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Reads a request body as the API does: the depth limit, JSON syntax, then the strict
/// deserializer (public for the fuzz targets, which must test this very path).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            None,
            "the request body is empty; send a JSON object",
        ));
    }
    if let Some(at) = too_deep_at(bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            format!(
                "the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep (at byte {at})"
            ),
            None,
        ));
    }
    let input = parse_json(bytes)?;
    drover_types::from_input(input)
        .map_err(|e| ApiError::invalid(located(e.path()), e.kind().to_string()))
}

/// [`JsonBody`], plus a digest of the body's bytes: what tells a submission retried
/// under its idempotency key (the same bytes, as a client sends them again) from
/// another one. Hashing the bytes costs a fraction of encoding the parsed value again.
#[derive(Debug)]
pub struct DigestedJsonBody<T> {
    pub value: T,
    pub digest: u64,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for DigestedJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let value = parse_body(&bytes)?;
        let digest = drover_state::idempotency::digest(&bytes);
        Ok(DigestedJsonBody { value, digest })
    }
}

/// For routes that take no body: an empty body or an empty JSON object, nothing else,
/// so that a client sending parameters there learns they are ignored.
#[derive(Debug)]
pub struct NoBody;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an empty object")]
struct Empty {}

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        let input = parse_json(&bytes)?;
        drover_types::from_input::<Empty>(input)
            .map(|_| NoBody)
            .map_err(|e| ApiError::invalid(located(e.path()), e.kind().to_string()))
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("the request body is larger than this server accepts")
        } else if timed_out(Some(&rejection)) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time; send it at once",
                None,
            )
        } else {
            ApiError::invalid(None, rejection.body_text())
        }
    })
}

/// Parses JSON syntax only; a syntax error names the field it occurred in.
fn parse_json(bytes: &[u8]) -> Result<drover_types::Input, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let input: drover_types::Input = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(
            located(&path).filter(|p| p != "?"),
            format!("not valid JSON: {}", e.inner()),
        )
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(None, format!("trailing data after the JSON body: {e}")))?;
    Ok(input)
}

fn located(path: &str) -> Option<String> {
    (!path.is_empty() && path != ".").then(|| path.to_string())
}

/// Like `axum::extract::Query`, with a JSON 400 naming the parameter.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                ApiError::invalid(field, format!("bad query parameter: {}", e.inner()))
            })
    }
}

/// Like `axum::extract::Path`, with a JSON 400 saying which path parameter is wrong.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PathParam<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParam(v))
            .map_err(|rejection| {
                ApiError::invalid(None, format!("bad path: {}", rejection.body_text()))
            })
    }
}

/// Reads a numeric id from a path segment, naming the parameter when it is not one.
pub fn id_param(name: &str, text: &str, max: u64) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ApiError::invalid(
            Some(name.to_string()),
            format!("{text:?} is not a {name} id: expected a whole number from 0 to {max}"),
        )),
    }
}
