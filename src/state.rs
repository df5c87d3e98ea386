//! The shared application state every face reaches (`web::Data<AppState>`).
//! `startup` builds it; the faces (`api`, `soap`, `paint`) only read it, so
//! they never import `startup`.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::body::Bodies;
use crate::config::ServeSettings;
use crate::domain::public_id::IdCipher;
use crate::metrics::Metrics;
use crate::pull::Pull;
use crate::soapxml::http::EnvelopeReader;
use crate::store::Store;
use crate::transport::TransportSettings;
use crate::webhook::Webhooks;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    pub pull: Pull,
    pub settings: Arc<ServeSettings>,
    /// The outgoing HTTP client of push (for `POST /v1/triggers/{T}/test`).
    pub webhooks: Webhooks,
    /// Request bodies: deadline and large-body permits.
    pub bodies: Bodies,
    /// SOAP and PAINT request envelopes.
    pub envelopes: EnvelopeReader,
    /// What the SMTP and FTP transports are built from (for the test of an
    /// email or ftp destination).
    pub transports: TransportSettings,
    /// Makes the row ids the API shows opaque (delivery ids).
    pub ids: IdCipher,
}
