//! The OpenAPI document of the API (`GET /openapi.json`), generated from the handlers.

use utoipa::OpenApi;

use super::{ledger, mesh, tlog, transfer, watch, witness};

#[derive(OpenApi)]
#[openapi(
    info(title = "Onoal node API", description = "Drive and observe a running onoal node: its ledger, its replicas, its peers, its C2SP tlog-tiles."),
    paths(
        super::health, super::metrics, super::status,
        ledger::append, ledger::query, ledger::get_entry, ledger::latest_checkpoint,
        ledger::sign_checkpoint, ledger::checkpoint_sizes, ledger::checkpoint_at,
        ledger::inclusion, ledger::consistency, ledger::start_verify, ledger::verify_job,
        ledger::replicas, ledger::forks, ledger::drop_fork, ledger::drop_replica, watch::watch,
        mesh::peers, mesh::connect, mesh::disconnect, mesh::topology, mesh::discover, mesh::discovery, mesh::messages, mesh::connections, mesh::connect_member, mesh::disconnect_member, mesh::query, mesh::verify, mesh::refs, mesh::ref_records, mesh::sync,
        mesh::follows, mesh::unfollow, mesh::trust, mesh::trust_set, mesh::trust_show, mesh::trust_anchor_add, mesh::trust_anchor_remove, mesh::visibility, mesh::visibility_set, mesh::trust_path, mesh::route,
        tlog::checkpoint, tlog::tile,
        witness::info, witness::add_checkpoint, witness::checkpoint, witness::drop_evidence,
        transfer::start, transfer::list, transfer::status, transfer::balance, transfer::mint,
        transfer::register, transfer::held, transfer::trace,
    ),
    modifiers(&BearerAuth),
    tags((name = "node", description = "Health, metrics, status"),
         (name = "ledger", description = "The own log and replicas"),
         (name = "mesh", description = "Peers, sync, topology (the seed's /mesh routes)"),
         (name = "tlog", description = "C2SP tlog-tiles read API"),
         (name = "witness", description = "C2SP tlog-witness: cosigning other logs' checkpoints"),
         (name = "transfers", description = "Two-phase token transfers between ledgers, balances"),
         (name = "assets", description = "Registered assets: register, held, the proven owner")),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The OpenAPI 3.1 document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
