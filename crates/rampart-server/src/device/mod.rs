//! The native device API (`/device/v1/...` over mutual TLS): polls, reports, attributes, and
//! the image repository and director routes devices read.

pub(crate) mod api;
mod attestation;
mod director;
mod enrolment;
mod evidence;
mod poll_read;
mod quarantine;
mod repo;
mod report_rate;
mod reports;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

use crate::observe::metrics::track_requests;

use crate::delivery::artifact_store::ArtifactStore;
use crate::delivery::director::Director;
use crate::delivery::image_repo::{HostedRepo, HostedRepoError};
use crate::helpers::unix_now;
use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;
use api::DeviceApi;

/// Shared state of the repository and director routes.
pub(crate) struct Delivery {
    pub(crate) api: Arc<DeviceApi>,
    pub(crate) repo: Arc<HostedRepo>,
    /// Where the artifacts are read from.
    pub(crate) artifacts: ArtifactStore,
    pub(crate) director: Option<Director>,
}

/// The repository and director routes a configuration asks for (none without an image
/// repository); fails for a director without an image repository, or whose root does not
/// suit its key.
pub(crate) fn routes(
    config: &crate::ServerConfig,
    api: Arc<DeviceApi>,
    repo: Option<Arc<HostedRepo>>,
) -> Result<Router, crate::ServerError> {
    let Some(dir) = &config.image_repo else {
        if config.director.is_some() {
            return Err(crate::ServerError::Config(
                "the director needs an image repository to point into: set image_repo (`rampart server --repo DIR`)".into(),
            ));
        }
        return Ok(Router::new());
    };
    let director = config
        .director
        .as_ref()
        .map(Director::new)
        .transpose()
        .map_err(crate::ServerError::Config)?;
    let repo = repo.unwrap_or_else(|| Arc::new(HostedRepo::new(dir)));
    let artifacts = config
        .artifact_store
        .clone()
        .unwrap_or_else(|| ArtifactStore::Local(dir.join("targets")));
    Ok(repo_router(Arc::new(Delivery {
        api,
        repo,
        artifacts,
        director,
    })))
}

/// The repository routes, and the director's when one is configured.
fn repo_router(delivery: Arc<Delivery>) -> Router {
    // The director route exists even without a director, so a device configured for one gets
    // a clear `no_director` answer rather than an unknown-endpoint one.
    Router::new()
        .route("/device/v1/repo/metadata/{file}", get(repo::metadata_file))
        .route("/device/v1/repo/targets/{*path}", get(repo::target_file))
        .route("/device/v1/director/{file}", get(director::director_file))
        .with_state(delivery)
}

impl Delivery {
    /// The calling device (registered on first contact; 403 if revoked), its contact recorded.
    pub(crate) async fn device(&self, peer: &PeerIdentity) -> Result<String, ApiError> {
        let now = unix_now();
        let device = self.api.identify(peer, now).await?;
        self.api.last_seen.record(&device.id, now);
        Ok(device.id)
    }

    /// Runs blocking repository work off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&HostedRepo) -> Result<T, HostedRepoError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let repo = self.repo.clone();
        match tokio::task::spawn_blocking(move || work(&repo)).await {
            Ok(result) => result.map_err(|e| e.to_api()),
            Err(_) => Err(ApiError::internal()),
        }
    }
}

/// The device API routes, with request metrics.
pub(crate) fn router(api: Arc<DeviceApi>, delivery: Router) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/device/v1/poll", post(api::poll))
        .route("/device/v1/reports", post(reports::report))
        .route("/device/v1/attributes", put(reports::attributes))
        .route("/device/v1/attestation/enrol", post(attestation::enrol))
        .route(
            "/device/v1/attestation/activate",
            post(attestation::activate),
        )
        .route("/device/v1/attestation/quote", post(attestation::quote))
        .route(
            "/device/v1/evidence/{id}",
            get(evidence::progress).put(evidence::upload),
        )
        .route(
            "/device/v1/evidence/{id}/complete",
            post(evidence::complete),
        )
        .route("/device/v1/quarantine/ack", post(quarantine::ack))
        .with_state(api)
        .merge(delivery)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
}

#[cfg(test)]
mod tests {
    /// The rollback-spike detector (rampart-notify) counts reports by the device protocol's
    /// spelling of a rollback; a renamed status would silently blind it.
    #[test]
    fn the_spike_detector_counts_the_protocols_rolled_back_status() {
        assert_eq!(
            rampart_notify::ROLLED_BACK,
            rampart_protocol::ReportStatus::RolledBack.as_str()
        );
    }
}
