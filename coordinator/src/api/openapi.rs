//! The API's OpenAPI 3.1 document, generated from the handlers and types
//! (utoipa), served at `/v1/openapi.json` and committed as
//! `coordinator/openapi.json`, which a test keeps equal to it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{hosts, migrations, problem, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Migration Factory",
        description = "Self-service migration of EL hosts: readiness, pre-checks and \
                       migration requests under the site's rules. Every call needs a bearer \
                       token from the site's OpenID Connect provider or an operator's client \
                       certificate; a caller sees and acts on its scope only. Errors are \
                       application/problem+json (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        hosts::list,
        hosts::get,
        hosts::precheck,
        migrations::request,
        migrations::follow,
        migrations::cancel,
        webhooks::add,
        webhooks::list,
        webhooks::remove,
    ),
    components(schemas(problem::Problem)),
    modifiers(&Security),
    security(("bearer" = []), ("certificate" = [])),
    tags(
        (name = "hosts", description = "Hosts, readiness and pre-checks"),
        (name = "migrations", description = "Migration requests"),
        (name = "webhooks", description = "Events out, as signed CloudEvents (admins)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An ID or access token of the site's OpenID Connect provider (RS256 or \
                         ES256), for this API's audience",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "certificate",
            SecurityScheme::MutualTls {
                description: Some("An operator certificate (mfctl operator add)".into()),
                deprecated: None,
                extensions: None,
            },
        );
    }
}

/// The document as served and committed.
pub fn json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

pub async fn document() -> Json<serde_json::Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MF_UPDATE_OPENAPI=1 cargo test -p mf-coordinator openapi` writes it.
    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = json();
        if std::env::var_os("MF_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "coordinator/openapi.json differs from the API's code: run \
             MF_UPDATE_OPENAPI=1 cargo test -p mf-coordinator openapi, review and commit it"
        );
        let document: serde_json::Value = serde_json::from_str(&generated).expect("json");
        assert_eq!(document["openapi"], "3.1.0");
        for path in [
            "/v1/hosts",
            "/v1/hosts/{id}",
            "/v1/hosts/{id}/precheck",
            "/v1/migrations",
            "/v1/migrations/{id}",
            "/v1/webhooks",
            "/v1/webhooks/{id}",
        ] {
            assert!(document["paths"][path].is_object(), "{path} is documented");
        }
    }
}
