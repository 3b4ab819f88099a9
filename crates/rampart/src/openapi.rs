//! The answers every API operation can give because of the layers in front of its handler.
//!
//! A handler's `#[utoipa::path]` documents what the handler itself returns. The edge layer
//! (client address, rate limits, the WAF, the JSON and text guards, body limits, the
//! request timeout) and the authentication extractor answer before or around it, for any
//! route, and a client must be able to rely on the document for those answers too:
//! schemathesis checks every status it receives against it (`tests/schemathesis/run.py`,
//! run by CI on both backends). This pass adds them once, from the shape of each
//! operation, rather than repeating six lines on each of sixty handlers. A response a
//! handler already documents keeps the handler's own description.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema, Type,
};

/// Adds the edge layer's answers to every operation under `/api/`.
pub fn document_edge_responses(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let has_path_params = path.contains('{');
        for op in operations(item) {
            let has_body = op.request_body.is_some();
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            add(
                op,
                400,
                "Malformed request: a body that is not the JSON documented, a NUL or other \
                 control character in text, a bad query or path value",
            );
            if secured {
                add(
                    op,
                    401,
                    "No valid access token, API key or session (`unauthorized`)",
                );
            }
            add(
                op,
                403,
                "Refused: the caller lacks the permission (`forbidden`), or the WAF blocked \
                 the request (`request_blocked`)",
            );
            if has_path_params {
                add(
                    op,
                    404,
                    "No such resource, or not the caller's tenant's (`not_found`)",
                );
            }
            if has_body {
                add(
                    op,
                    413,
                    "Body over `http.max_body_bytes` or `edge.max_json_bytes` (`payload_too_large`)",
                );
                add(
                    op,
                    415,
                    "A body that is not `application/json` (`unsupported_media_type`)",
                );
            }
            if has_body || has_params {
                add(
                    op,
                    422,
                    "A field that breaks a rule of the documented schema (`invalid_field`)",
                );
            }
            add_with_retry_after(
                op,
                429,
                "Over a rate limit (per client address, API key or tenant: `too_many_requests`)",
            );
            add(
                op,
                408,
                "The request took longer than `http.request_timeout_secs` (`timeout`)",
            );
            add_with_retry_after(
                op,
                503,
                "The node is shedding load or a backing service is down (`unavailable`), or \
                 it holds too many connections (`too_many_connections`)",
            );
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

fn add(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(error_response(description).build()));
}

fn add_with_retry_after(op: &mut Operation, status: u16, description: &str) {
    let seconds = Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build());
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            RefOr::T(
                error_response(description)
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(seconds)
                            .description(Some("Seconds to wait before retrying"))
                            .build(),
                    )
                    .build(),
            )
        });
}
