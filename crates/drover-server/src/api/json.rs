//! A JSON body extractor whose errors name the offending field.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Like `axum::Json`, but a malformed body gets a 400 naming the field path
/// (`tasks[2].resources.cpu_milli: invalid type: string "x", expected u32`), an
/// oversize one a 413, both as JSON. serde_json's recursion limit stays on, so deeply
/// nested input is refused rather than blowing the stack.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is larger than this server accepts")
            } else {
                ApiError::invalid(None, rejection.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::invalid(
                None,
                "the request body is empty; send JSON",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = (path != ".").then_some(path);
            ApiError::invalid(field, e.inner().to_string())
        })?;
        de.end().map_err(|e| {
            ApiError::invalid(None, format!("trailing data after the JSON body: {e}"))
        })?;
        Ok(JsonBody(value))
    }
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
